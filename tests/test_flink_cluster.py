"""scripts/flink_cluster.sh: a standalone Flink session cluster (a JobManager and a TaskManager
with 2 slots, separate processes) from the files `scripts/setup.sh --with-flink` caches, started,
given a job through its REST API, and stopped by pid with nothing left behind.

Beam's Flink job-server jar is not served by the Maven Central these machines reach, so the
pipeline's Beam steps are not run on this cluster here (docs/orchestrators.md); the job is a
small DataStream program compiled with the JDK, over both slots.
"""

import glob
import json
import os
import pathlib
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
FLINK_HOME = pathlib.Path(os.path.expanduser("~/.cache/tfx_poets/flink/flink-1.19.3"))
JOB = """
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;

public class ClusterCheck {
  public static void main(String[] args) throws Exception {
    StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
    env.setParallelism(2);
    env.fromSequence(1, 10000).filter(x -> x % 3 == 0).print();
    env.execute("tfx-poets-cluster-check");
  }
}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def rest(port: int, path: str, data: bytes | None = None) -> dict:
    request = urllib.request.Request(f"http://localhost:{port}{path}", data=data,
                                     method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:  # Flink's REST errors say why in the body
        raise AssertionError(f"{path}: {error.code} {error.read()[:2000]!r}") from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for every purpose here.
    return pathlib.Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0


@pytest.fixture
def cluster(tmp_path):
    if not glob.glob(str(FLINK_HOME / "lib" / "flink-dist-*.jar")):
        pytest.fail(f"no Flink distribution in {FLINK_HOME}: run `bash scripts/setup.sh "
                    "--with-flink`", pytrace=False)
    env = {**os.environ, "FLINK_REST_PORT": str(free_port()), "FLINK_RPC_PORT": str(free_port()),
           "FLINK_CLUSTER_DIR": str(tmp_path / "cluster")}
    script = ["bash", str(REPO / "scripts" / "flink_cluster.sh")]
    started = subprocess.run([*script, "start"], env=env, capture_output=True, text=True,
                             timeout=300)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield int(env["FLINK_REST_PORT"]), tmp_path / "cluster", started.stdout
    finally:
        stopped = subprocess.run([*script, "stop"], env=env, capture_output=True, text=True,
                                 timeout=120)
        assert stopped.returncode == 0, stopped.stderr


def _job_jar(tmp_path: pathlib.Path) -> pathlib.Path:
    source = tmp_path / "job" / "ClusterCheck.java"
    source.parent.mkdir()
    source.write_text(JOB)
    classpath = ":".join(glob.glob(str(FLINK_HOME / "lib" / "*.jar")))
    subprocess.run(["javac", "-cp", classpath, "-d", str(source.parent), str(source)],
                   check=True, capture_output=True, timeout=300)
    jar = tmp_path / "job" / "cluster-check.jar"
    subprocess.run(["jar", "cfe", str(jar), "ClusterCheck", "-C", str(source.parent), "."],
                   check=True, capture_output=True, timeout=120)
    return jar


def _flink_runner_error(tmp_path, port, capsys) -> str:
    import runner_local
    from pipeline import cli
    from tests.support import make_image_folder

    photos = make_image_folder(tmp_path / "photos", {"a": 2, "b": 2})
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "saved_model.pb").write_bytes(b"")  # checked, not run
    flags = [f"--data-dir={photos}", f"--model-handle={hub}", "--image-size=128",
             f"--pipeline-root={tmp_path / 'out'}", "--beam-runner=FlinkRunner",
             f"--beam-arg=--flink_master=localhost:{port}",
             f"--beam-arg=--flink_job_server_jar={tmp_path / 'no-job-server.jar'}"]
    capsys.readouterr()
    assert cli.main(flags, run_pipeline=runner_local.run, prog="runner_local.py") == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    return line


def test_flink_cluster_runs_a_job_on_two_slots_and_stops_by_pid(cluster, tmp_path, capsys):
    port, cluster_dir, start_line = cluster
    pids = {name: int((cluster_dir / f"{name}.pid").read_text())
            for name in ("jobmanager", "taskmanager")}
    assert pids["jobmanager"] != pids["taskmanager"]
    commands = {name: pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().decode()
                for name, pid in pids.items()}
    assert "StandaloneSessionClusterEntrypoint" in commands["jobmanager"]
    assert "TaskManagerRunner" in commands["taskmanager"]
    overview = rest(port, "/overview")
    assert (overview["taskmanagers"], overview["slots-total"]) == (1, 2), overview
    assert overview["flink-version"] == "1.19.3"
    assert f"http://localhost:{port}" in start_line

    # A job through the REST API, as a job server submits one.
    upload = subprocess.run(
        ["curl", "-sf", "-X", "POST", "-F", f"jarfile=@{_job_jar(tmp_path)}",
         f"http://localhost:{port}/jars/upload"], capture_output=True, text=True, timeout=60)
    jar_id = json.loads(upload.stdout)["filename"].rsplit("/", 1)[-1]
    job_id = rest(port, f"/jars/{jar_id}/run", data=b"{}")["jobid"]
    deadline = time.monotonic() + 120
    while (job := rest(port, f"/jobs/{job_id}"))["state"] not in ("FINISHED", "FAILED"):
        assert time.monotonic() < deadline, job
        time.sleep(1)
    assert job["state"] == "FINISHED", job
    assert job["name"] == "tfx-poets-cluster-check"
    assert max(vertex["parallelism"] for vertex in job["vertices"]) == 2
    jobs = rest(port, "/jobs/overview")["jobs"]
    assert [(j["jid"], j["state"]) for j in jobs] == [(job_id, "FINISHED")]

    # The live cluster passes runner_local's check; the missing job-server jar is one line.
    line = _flink_runner_error(tmp_path, port, capsys)
    assert str(tmp_path / "no-job-server.jar") in line and "setup.sh --with-flink" in line

    stopped = subprocess.run(
        ["bash", str(REPO / "scripts" / "flink_cluster.sh"), "stop"],
        env={**os.environ, "FLINK_REST_PORT": str(port), "FLINK_CLUSTER_DIR": str(cluster_dir)},
        capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    for name, pid in pids.items():
        assert f"{name} (pid {pid})" in stopped.stdout
        assert not _alive(pid), f"{name} pid {pid} still running"
    with pytest.raises(OSError):
        socket.create_connection(("localhost", port), timeout=2).close()


def test_flink_cluster_start_without_the_distribution_is_one_line(tmp_path):
    completed = subprocess.run(
        ["bash", str(REPO / "scripts" / "flink_cluster.sh"), "start"],
        env={**os.environ, "FLINK_HOME": str(tmp_path / "none"),
             "FLINK_CLUSTER_DIR": str(tmp_path / "cluster")},
        capture_output=True, text=True, timeout=60)
    assert completed.returncode == 1
    (line,) = completed.stderr.strip().splitlines()
    assert "setup.sh --with-flink" in line and str(tmp_path / "none") in line
