"""beam_services' argument handling; the services themselves run in tests/test_beam_runners.py."""

import contextlib

import pytest

from pipeline import beam_services
from pipeline.cli import CliError


def test_portable_local_becomes_portable_runner_with_the_services_endpoints(monkeypatch):
    started = []

    @contextlib.contextmanager
    def fake_services(job_port, worker_pool_port, log_dir):
        started.append((job_port, worker_pool_port, log_dir))
        yield ["--runner=PortableRunner", f"--job_endpoint=localhost:{job_port}"]

    monkeypatch.setattr(beam_services, "local_portable_services", fake_services)
    args = ["--runner=portable-local", "--job_port=1234", "--worker_pool_port", "5678",
            "--parallelism=2"]
    with beam_services.beam_services(args, "/logs") as beam_args:
        assert beam_args == ["--runner=PortableRunner", "--job_endpoint=localhost:1234",
                             "--parallelism=2"]
    assert started == [(1234, 5678, "/logs")]
    with beam_services.beam_services(["--runner=portable-local"]) as beam_args:
        pass
    assert started[-1][:2] == (beam_services.DEFAULT_JOB_PORT,
                               beam_services.DEFAULT_WORKER_POOL_PORT)


def test_direct_runner_arguments_pass_unchanged():
    args = ["--runner=DirectRunner", "--direct_num_workers=1"]
    with beam_services.beam_services(args) as beam_args:
        assert beam_args == args


@pytest.mark.parametrize("args, flag", [
    (["--runner=PortableRunner"], "--job_endpoint=HOST:PORT"),
    (["--runner=PortableRunner", "--job_endpoint=nowhere"], "--job_endpoint=nowhere"),
    (["--runner=portable-local", "--job_port=abc"], "--job_port=abc"),
])
def test_bad_endpoint_flags_are_one_line_naming_the_flag(args, flag):
    with pytest.raises(CliError, match=flag), beam_services.beam_services(args):
        pass


def test_the_last_option_wins_in_either_spelling():
    assert beam_services._option(["--a=1", "--a", "2"], "--a") == "2"
    assert beam_services._option(["--ab=1"], "--a") is None
    assert beam_services._without(["--a=1", "--b", "--a", "2", "--c=3"], ["--a"]) == [
        "--b", "--c=3"]
