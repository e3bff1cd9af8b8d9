"""The pipeline's Beam steps on Beam's portable runner, compared with DirectRunner.

`runner_local.py --beam-runner portable-local` starts a Beam job service and an EXTERNAL SDK
worker pool as processes of their own, runs the whole pipeline through them and stops them.
The same photos through DirectRunner must give the same examples, statistics and transformed
examples, and a blessed, pushed model. Also: the one-line errors of endpoints that are not there.
"""

import os
import pathlib
import re
import socket
import subprocess
import sys

import pytest

from tests.support import make_image_folder, make_random_hub_mobilenet

REPO = pathlib.Path(__file__).resolve().parent.parent
CLASSES = {"circle_red": 16, "square_green": 16, "triangle_blue": 16}
SPLITS = ("train", "eval", "test")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("beam_inputs")
    photos = make_image_folder(root / "photos", CLASSES, size=(64, 48))
    hub = make_random_hub_mobilenet(root / "hub", alpha=0.25, resolution=128)
    return photos, hub


def pipeline_flags(inputs, pipeline_root):
    photos, hub = inputs
    return [
        f"--data-dir={photos}", f"--model-handle={hub}", "--image-size=128",
        "--fine-tune-epochs=0", "--train-batch-size=16",
        "--testing-percentage=20", "--validation-percentage=20", "--min-accuracy=0",
        f"--pipeline-root={pipeline_root}",
    ]


@pytest.fixture(scope="module")
def runs(inputs, tmp_path_factory):
    """The pipeline on DirectRunner and on portable-local, at the same time: on 2 cores that
    takes about the longer run's time, as much of portable-local's is spent starting processes
    and waiting on the job service."""
    roots = {name: tmp_path_factory.mktemp(name) / "out" for name in ("direct", "portable")}
    extra = {"direct": [], "portable": [
        "--beam-runner=portable-local", f"--beam-arg=--job_port={free_port()}",
        f"--beam-arg=--worker_pool_port={free_port()}"]}
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    processes, completed = {}, {}
    # Output to files, not pipes: a full pipe would stall one run while the other is read.
    logs = {name: (root.parent / "stdout.log", root.parent / "stderr.log")
            for name, root in roots.items()}
    try:
        for name, root in roots.items():
            with open(logs[name][0], "w") as stdout, open(logs[name][1], "w") as stderr:
                processes[name] = subprocess.Popen(
                    [sys.executable, "runner_local.py", *pipeline_flags(inputs, root),
                     *extra[name]], cwd=REPO, env=env, stdout=stdout, stderr=stderr)
        for name, process in processes.items():
            process.wait(timeout=1200)
            completed[name] = subprocess.CompletedProcess(
                process.args, process.returncode, logs[name][0].read_text(),
                logs[name][1].read_text())
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()  # runner_local then stops its services
                process.wait(timeout=60)
    return {name: (roots[name], completed[name]) for name in roots}


@pytest.fixture(scope="module")
def direct_run(runs):
    root, completed = runs["direct"]
    assert completed.returncode == 0, completed.stderr[-5000:]
    return root, completed


@pytest.fixture(scope="module")
def portable_run(runs):
    return runs["portable"]


def _record_count(pattern_root: pathlib.Path, pattern: str) -> int:
    import tensorflow as tf

    files = sorted(str(path) for path in pattern_root.glob(pattern))
    assert files, f"no files {pattern} under {pattern_root}"
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))


def beam_step_outputs(root: pathlib.Path) -> dict:
    """What each Beam step wrote, as counts that any runner must reproduce exactly."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    artifacts = root / "artifacts"
    (examples,) = (artifacts / "ImageExampleGen" / "examples").iterdir()
    (statistics,) = (artifacts / "StatisticsGen" / "statistics").iterdir()
    (transformed,) = (artifacts / "Transform" / "transformed_examples").iterdir()
    outputs = {"examples": {}, "statistics": {}, "transformed": {}}
    for split in SPLITS:
        outputs["examples"][split] = _record_count(examples, f"Split-{split}/*.gz")
        stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(
            (statistics / f"Split-{split}" / "FeatureStats.pb").read_bytes())
        (dataset,) = stats.datasets
        outputs["statistics"][split] = {
            "num_examples": dataset.num_examples,
            **{"/".join(feature.path.step): (
                feature.string_stats.common_stats.num_non_missing
                or feature.num_stats.common_stats.num_non_missing
                or feature.bytes_stats.common_stats.num_non_missing)
               for feature in dataset.features},
        }
    for split in ("train", "eval"):
        outputs["transformed"][split] = _record_count(transformed, f"Split-{split}/*.gz")
    return outputs


def _blessed(root: pathlib.Path) -> bool:
    (blessing,) = (root / "artifacts" / "Evaluator" / "blessing").iterdir()
    return (blessing / "BLESSED").exists()


def test_portable_runner_runs_the_pipeline_like_direct_runner(direct_run, portable_run):
    direct_root, _ = direct_run
    root, completed = portable_run
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-5000:]
    expected = beam_step_outputs(direct_root)
    assert sum(expected["examples"].values()) == sum(CLASSES.values())
    assert beam_step_outputs(root) == expected
    assert _blessed(direct_root) and _blessed(root)
    versions = [path for path in (root / "serving_model").iterdir() if path.is_dir()]
    assert len(versions) == 1 and (versions[0] / "saved_model.pb").exists()


def test_portable_runner_used_the_services_it_started_and_stopped_them(portable_run):
    _, completed = portable_run
    assert completed.returncode == 0, completed.stderr[-5000:]
    started = dict(re.findall(r"beam: started the (job service|worker pool) on \S+ \(pid (\d+), ",
                              completed.stderr))
    assert set(started) == {"job service", "worker pool"}, completed.stderr[-3000:]
    for name, pid in started.items():
        assert f"beam: stopped the {name} (pid {pid})" in completed.stderr
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)
    # The job service ran the Beam steps: each of their Beam jobs went through it.
    log_dir = re.search(r"log (\S+)/job_service\.log\)", completed.stderr).group(1)
    job_log = (pathlib.Path(log_dir) / "job_service.log").read_text()
    jobs = len(re.findall(r"Completed job in", job_log)) or len(re.findall(r"DONE", job_log))
    # ImageExampleGen, StatisticsGen, Transform (analyse and transform), the two Evaluators.
    assert jobs >= 5, job_log[-3000:]


@pytest.fixture
def config_flags(tmp_path):
    photos = make_image_folder(tmp_path / "photos", {"a": 2, "b": 2})
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "saved_model.pb").write_bytes(b"")  # checked, not run
    return [f"--data-dir={photos}", f"--model-handle={hub}", "--image-size=128",
            f"--pipeline-root={tmp_path / 'out'}"]


def _one_line_error(capsys, flags):
    import runner_local
    from pipeline import cli

    assert cli.main(flags, run_pipeline=runner_local.run, prog="runner_local.py") == 2
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    return line


def test_a_job_service_that_is_not_there_is_one_line(config_flags, capsys):
    port = free_port()
    line = _one_line_error(capsys, [*config_flags, "--beam-runner=PortableRunner",
                                    f"--beam-arg=--job_endpoint=localhost:{port}"])
    assert f"--job_endpoint=localhost:{port}" in line and "portable-local" in line


def test_a_worker_pool_that_is_not_there_is_one_line(config_flags, capsys):
    with socket.socket() as job_service:  # something listens on the job port, not the pool's
        job_service.bind(("localhost", 0))
        job_service.listen()
        job_port, pool_port = job_service.getsockname()[1], free_port()
        line = _one_line_error(capsys, [
            *config_flags, "--beam-runner=PortableRunner",
            f"--beam-arg=--job_endpoint=localhost:{job_port}",
            "--beam-arg=--environment_type=EXTERNAL",
            f"--beam-arg=--environment_config=localhost:{pool_port}"])
    assert f"--environment_config=localhost:{pool_port}" in line


def test_a_taken_port_for_portable_local_is_one_line(config_flags, capsys):
    with socket.socket() as taken:
        taken.bind(("localhost", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = _one_line_error(capsys, [*config_flags, "--beam-runner=portable-local",
                                        f"--beam-arg=--job_port={port}"])
    assert f"port {port}" in line and "--job_port" in line


def test_a_flink_cluster_that_is_not_there_is_one_line(config_flags, capsys):
    port = free_port()
    line = _one_line_error(capsys, [*config_flags, "--beam-runner=FlinkRunner",
                                    f"--beam-arg=--flink_master=localhost:{port}"])
    assert f"--flink_master=localhost:{port}" in line and "flink_cluster.sh start" in line


def test_a_missing_flink_job_server_jar_is_one_line(config_flags, capsys, tmp_path):
    from http.server import BaseHTTPRequestHandler, HTTPServer
    from threading import Thread

    class Overview(BaseHTTPRequestHandler):  # a Flink REST API's /overview, nothing else
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"taskmanagers": 1}')

        def log_message(self, *args):
            pass

    server = HTTPServer(("localhost", 0), Overview)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        jar = tmp_path / "no-such-job-server.jar"
        line = _one_line_error(capsys, [
            *config_flags, "--beam-runner=FlinkRunner",
            f"--beam-arg=--flink_master=localhost:{server.server_port}",
            f"--beam-arg=--flink_job_server_jar={jar}"])
    finally:
        server.shutdown()
    assert str(jar) in line and "setup.sh --with-flink" in line
