"""The Beam services that the pipeline's Beam steps need beyond DirectRunner, and their checks.

`--beam-runner portable-local` runs the Beam steps on Beam's portable runner on this machine:
a job service and an SDK worker pool (EXTERNAL environment), each its own process, started
before the pipeline and stopped (by process group) after it, as a cluster's would be. Beam's
PROCESS and DOCKER environments are not used: PROCESS needs Beam's Go boot binary, DOCKER
a Docker daemon, and neither is installable here.

With `--beam-runner PortableRunner` or `FlinkRunner` the endpoints given with --beam-arg are
checked before any component runs, so a cluster that is not there, a wrong port or a missing
job-server jar is one line naming the flag or the command, not a traceback mid-pipeline.

`python -m pipeline.beam_services -h` starts the same two services by hand, for a pipeline
started elsewhere (e.g. Airflow's tasks) to use with --beam-runner PortableRunner.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence

from pipeline.cli import DEFAULT_CACHE_DIR, REPO_ROOT, CliError

LOCAL_PORTABLE = "portable-local"
# Beam's own defaults (its job server's and its worker pool's), so that reruns with the same
# flags give the same Beam arguments, which TFX's cache keys the Beam steps on.
DEFAULT_JOB_PORT = 8099
DEFAULT_WORKER_POOL_PORT = 50000
# Options this module reads and removes; Beam would reject them.
_OWN_OPTIONS = ("--job_port", "--worker_pool_port")
# Where scripts/setup.sh --with-flink caches the Flink distribution and Beam's job-server jar.
FLINK_CACHE_DIR = os.path.join(DEFAULT_CACHE_DIR, "flink")
_START_TIMEOUT_S = 120


@dataclasses.dataclass
class Service:
    name: str
    process: subprocess.Popen
    port: int
    log_path: str


def _option(args: Sequence[str], name: str) -> str | None:
    """The value of `--name=value` or `--name value` in Beam arguments; the last one wins."""
    value = None
    for index, arg in enumerate(args):
        if arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
        elif arg == name and index + 1 < len(args):
            value = args[index + 1]
    return value


def _without(args: Sequence[str], names: Sequence[str]) -> list[str]:
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in names:
            skip = True
        elif not arg.startswith(tuple(name + "=" for name in names)):
            kept.append(arg)
    return kept


def _split_endpoint(endpoint: str, flag: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit():
        raise CliError(f"{flag}={endpoint}: expected HOST:PORT, e.g. localhost:8099")
    return host, int(port)


def listening(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _port_flag(args: Sequence[str], name: str, default: int) -> int:
    value = _option(args, name)
    if value is None:
        return default
    if not value.isdigit():
        raise CliError(f"--beam-arg={name}={value}: expected a port number")
    return int(value)


def worker_environment() -> dict[str, str]:
    """The environment of the job service and the worker pool.

    The pool starts SDK workers as `python` from PATH, so this interpreter's folder comes first;
    the project's root goes on PYTHONPATH so that workers import `components.*` and `pipeline.*`
    even from a checkout that is not installed.
    """
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("TF_USE_LEGACY_KERAS", "1")
    return env


def start_service(name: str, module_args: Sequence[str], port: int, log_dir: str) -> Service:
    """`python -m MODULE_ARGS` in its own process group, once it listens on `port`."""
    if listening("localhost", port):
        raise CliError(
            f"port {port} for the Beam {name} is taken; pass --beam-arg="
            f"{'--job_port' if name == 'job service' else '--worker_pool_port'}=<free port>"
        )
    log_path = os.path.join(log_dir, name.replace(" ", "_") + ".log")
    with open(log_path, "ab") as log:
        # A session of its own: the pool's SDK workers are its children, stopped with it.
        process = subprocess.Popen(
            [sys.executable, "-m", *module_args], cwd=str(REPO_ROOT), env=worker_environment(),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    service = Service(name, process, port, log_path)
    deadline = time.monotonic() + _START_TIMEOUT_S
    while not listening("localhost", port, timeout=1):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_service(service)
            raise CliError(f"the Beam {name} did not start on port {port}; see {log_path}")
        time.sleep(0.5)
    print(f"beam: started the {name} on localhost:{port} (pid {process.pid}, log {log_path})",
          file=sys.stderr, flush=True)
    return service


def stop_service(service: Service, grace_s: float = 10) -> None:
    """Stops the service's process group: SIGTERM, then SIGKILL after `grace_s`."""
    pid = service.process.pid
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        try:
            service.process.wait(timeout=grace_s)
            break
        except subprocess.TimeoutExpired:
            continue
    # The group can outlive its leader (an SDK worker still exiting): make sure it is gone.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    print(f"beam: stopped the {service.name} (pid {pid})", file=sys.stderr, flush=True)


@contextlib.contextmanager
def local_portable_services(job_port: int = DEFAULT_JOB_PORT,
                            worker_pool_port: int = DEFAULT_WORKER_POOL_PORT,
                            log_dir: str | None = None) -> Iterator[list[str]]:
    """A job service and an EXTERNAL worker pool on this machine, for as long as the block
    runs; yields the Beam arguments that use them."""
    log_dir = log_dir or tempfile.mkdtemp(prefix="tfx_poets_beam_")
    os.makedirs(log_dir, exist_ok=True)
    services = []
    # The services run in sessions of their own (so that a stop reaches the pool's workers):
    # a plain `kill` of this process must stop them too, as Ctrl-C does.
    previous_handler = None
    if threading.current_thread() is threading.main_thread():
        previous_handler = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        services.append(start_service(
            "job service",
            ["apache_beam.runners.portability.local_job_service_main", "--port", str(job_port)],
            job_port, log_dir))
        services.append(start_service(
            "worker pool",
            ["apache_beam.runners.worker.worker_pool_main", "--service_port",
             str(worker_pool_port)],
            worker_pool_port, log_dir))
        yield [
            "--runner=PortableRunner", f"--job_endpoint=localhost:{job_port}",
            "--environment_type=EXTERNAL", f"--environment_config=localhost:{worker_pool_port}",
        ]
    finally:
        for service in reversed(services):
            stop_service(service)
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)


def log_dir(pipeline_root: str) -> str | None:
    """Services' logs beside the run's artifacts, when the pipeline root is a local folder."""
    return None if "://" in pipeline_root else os.path.join(pipeline_root, "beam_services")


def _runner(args: Sequence[str]) -> str:
    return _option(args, "--runner") or "DirectRunner"


def check_portable_endpoints(args: Sequence[str]) -> None:
    """PortableRunner: the job service, and an EXTERNAL worker pool, must be listening."""
    endpoint = _option(args, "--job_endpoint")
    if not endpoint:
        raise CliError(
            "--beam-runner PortableRunner needs --beam-arg=--job_endpoint=HOST:PORT (a running "
            f"Beam job service), or use --beam-runner {LOCAL_PORTABLE} to start one here"
        )
    host, port = _split_endpoint(endpoint, "--job_endpoint")
    if not listening(host, port):
        raise CliError(
            f"--job_endpoint={endpoint}: no Beam job service answers there; start one (python -m "
            "pipeline.beam_services) or use --beam-runner portable-local"
        )
    if (_option(args, "--environment_type") or "").upper() == "EXTERNAL":
        config = _option(args, "--environment_config") or ""
        host, port = _split_endpoint(config, "--environment_config")
        if not listening(host, port):
            raise CliError(
                f"--environment_config={config}: no Beam worker pool answers there; start one "
                "(python -m pipeline.beam_services) or use --beam-runner portable-local"
            )


def flink_job_server_jar(args: Sequence[str]) -> str | None:
    """The job-server jar given with --flink_job_server_jar, else the one setup cached."""
    given = _option(args, "--flink_job_server_jar")
    if given:
        return given
    pattern = os.path.join(FLINK_CACHE_DIR, "beam-runners-flink-*-job-server-*.jar")
    cached = sorted(glob.glob(pattern))
    return cached[-1] if cached else None


def check_flink(args: Sequence[str]) -> None:
    """FlinkRunner: the cluster's REST API must answer, and the Beam job-server jar exist (else
    Beam downloads it from Maven Central in the middle of the first Beam step)."""
    master = _option(args, "--flink_master") or "[auto]"
    if master not in ("[auto]", "[local]"):
        address = master if "://" in master else f"http://{master}"
        try:
            with urllib.request.urlopen(f"{address}/overview", timeout=5) as response:
                response.read()
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise CliError(
                f"--flink_master={master}: no Flink cluster answers there ({reason}); start one "
                "with `bash scripts/flink_cluster.sh start` or pass the right HOST:PORT"
            ) from None
    jar = flink_job_server_jar(args)
    if jar is None or not os.path.isfile(jar):
        where = f"missing ({jar})" if jar else f"not cached in {FLINK_CACHE_DIR}"
        raise CliError(
            f"--beam-runner FlinkRunner: Beam's Flink job-server jar is {where}; run "
            "`bash scripts/setup.sh --with-flink` or pass --beam-arg=--flink_job_server_jar=PATH"
        )


@contextlib.contextmanager
def beam_services(beam_args: Sequence[str], log_dir: str | None = None) -> Iterator[list[str]]:
    """The Beam arguments to run with: for portable-local, with the services it starts (for
    the duration of the block); for a portable or Flink runner, once its endpoints answer."""
    runner = _runner(beam_args)
    if runner == LOCAL_PORTABLE:
        rest = _without(beam_args, ["--runner", *_OWN_OPTIONS])
        with local_portable_services(
            _port_flag(beam_args, "--job_port", DEFAULT_JOB_PORT),
            _port_flag(beam_args, "--worker_pool_port", DEFAULT_WORKER_POOL_PORT),
            log_dir,
        ) as service_args:
            yield [*service_args, *rest]
        return
    if runner == "PortableRunner":
        check_portable_endpoints(beam_args)
    elif runner == "FlinkRunner":
        check_flink(beam_args)
        if not _option(beam_args, "--flink_job_server_jar"):
            beam_args = [*beam_args, f"--flink_job_server_jar={flink_job_server_jar(beam_args)}"]
    yield list(beam_args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.beam_services",
        description="Start a Beam job service and an SDK worker pool (EXTERNAL environment) on "
        "this machine and keep them until interrupted, for pipelines run with --beam-runner "
        "PortableRunner --beam-arg=--job_endpoint=localhost:JOB_PORT "
        "--beam-arg=--environment_type=EXTERNAL "
        "--beam-arg=--environment_config=localhost:WORKER_POOL_PORT.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--job-port", type=int, default=DEFAULT_JOB_PORT,
                        help="port of the job service")
    parser.add_argument("--worker-pool-port", type=int, default=DEFAULT_WORKER_POOL_PORT,
                        help="port of the SDK worker pool")
    parser.add_argument("--log-dir", default=None,
                        help="where the services' logs go; empty: a new temporary folder")
    args = parser.parse_args(argv)
    try:
        with local_portable_services(args.job_port, args.worker_pool_port, args.log_dir) as flags:
            print("beam: pass " + " ".join(f"--beam-arg={flag}" for flag in flags[1:])
                  + " with --beam-runner PortableRunner; Ctrl-C stops both", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
    except CliError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
