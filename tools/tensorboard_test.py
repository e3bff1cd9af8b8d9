"""Tests of `python -m tools.tensorboard`: which logs it serves, which port it takes, and one
real start on a busy port."""

import contextlib
import pathlib
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tools import tensorboard

REPO = pathlib.Path(__file__).resolve().parent.parent


def _write_events(folder: pathlib.Path, name: str = "events.out.tfevents.1.host") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(b"")


def _fake_pipeline_root(root: pathlib.Path, execution_ids=(9, 10, 7)) -> pathlib.Path:
    model_run = root / "artifacts" / "Trainer" / "model_run"
    for execution_id in execution_ids:
        _write_events(model_run / str(execution_id) / "train")
        _write_events(model_run / str(execution_id) / "validation")
    return root


@contextlib.contextmanager
def _held_port(port: int = 0):
    """A socket bound (and listening) on 127.0.0.1:`port`; 0 picks a free ephemeral port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", port))
        held.listen()
        yield held.getsockname()[1]


def test_training_log_dirs_names_each_execution_in_numeric_order(tmp_path):
    root = _fake_pipeline_root(tmp_path)
    # A Trainer that failed before writing events is left out.
    (root / "artifacts" / "Trainer" / "model_run" / "11").mkdir()
    runs = tensorboard.training_log_dirs(str(root))
    model_run = root / "artifacts" / "Trainer" / "model_run"
    assert runs == {f"run-{n}": str(model_run / str(n)) for n in (7, 9, 10)}
    assert list(runs) == ["run-7", "run-9", "run-10"]


def test_fine_tuner_runs_are_served_beside_the_trainer_runs(tmp_path):
    root = _fake_pipeline_root(tmp_path, execution_ids=(9,))
    fine_tune = root / "artifacts" / "FineTuner" / "model_run" / "8"
    _write_events(fine_tune / "train")
    runs = tensorboard.training_log_dirs(str(root))
    assert list(runs) == ["fine-tune-8", "run-9"]
    assert runs["fine-tune-8"] == str(fine_tune)


def test_training_log_dirs_of_a_root_without_a_trainer_is_empty(tmp_path):
    assert tensorboard.training_log_dirs(str(tmp_path)) == {}


def test_logdir_spec_joins_name_and_folder():
    spec = tensorboard.logdir_spec({"run-7": "/out/model_run/7", "run-9": "/out/model_run/9"})
    assert spec == "run-7:/out/model_run/7,run-9:/out/model_run/9"


def test_logdir_spec_refuses_a_comma_in_a_path():
    with pytest.raises(tensorboard.TensorBoardError, match="comma"):
        tensorboard.logdir_spec({"run-1": "/a,b/1"})


def test_choose_port_keeps_a_free_port_and_skips_a_held_one():
    with _held_port() as busy:
        assert not tensorboard.port_is_free("127.0.0.1", busy)
        chosen = tensorboard.choose_port("127.0.0.1", busy)
        assert chosen > busy and tensorboard.port_is_free("127.0.0.1", chosen)
    assert tensorboard.choose_port("127.0.0.1", busy) == busy


def test_choose_port_skips_6006_when_it_is_held():
    try:
        holder = _held_port(6006)
        holder.__enter__()
    except OSError:
        holder = None  # something else on this machine holds 6006: busy either way
    try:
        assert tensorboard.choose_port("127.0.0.1", 6006) > 6006
    finally:
        if holder is not None:
            holder.__exit__(None, None, None)


def test_choose_port_gives_up_in_one_line():
    with _held_port() as busy, pytest.raises(tensorboard.TensorBoardError, match="--port"):
        tensorboard.choose_port("127.0.0.1", busy, attempts=1)


def test_main_without_logs_is_one_line_and_exit_2(tmp_path, capsys):
    assert tensorboard.main(["--pipeline-root", str(tmp_path)], serve=None) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert "no training logs" in line and str(tmp_path) in line and "runner_local.py" in line


def test_main_reports_the_taken_port_and_serves_the_next(tmp_path, capsys):
    served = []
    root = _fake_pipeline_root(tmp_path)
    with _held_port() as busy:
        code = tensorboard.main(
            ["--pipeline-root", str(root), "--port", str(busy)],
            serve=lambda spec, host, port: served.append((spec, host, port)),
        )
    assert code == 0
    ((spec, host, port),) = served
    assert host == "127.0.0.1" and port > busy
    assert spec.startswith("run-7:") and ",run-10:" in spec
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"tensorboard: port {busy} is in use; using {port}"
    assert f"http://127.0.0.1:{port}/" in out[-1]


def test_help_names_the_command_and_the_port(capsys):
    with pytest.raises(SystemExit) as exit_info:
        tensorboard.main(["-h"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert tensorboard.PROG in help_text and "--pipeline-root" in help_text
    assert "6006" in help_text and "next free" in help_text


@pytest.mark.parametrize("port", ["0", "70000", "http"])
def test_a_port_out_of_range_is_a_usage_error(port, capsys):
    with pytest.raises(SystemExit) as exit_info:
        tensorboard.main(["--port", port])
    assert exit_info.value.code == 2
    assert "is not a port number" in capsys.readouterr().err


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status


def test_it_starts_on_the_next_port_when_one_is_busy_and_answers_http(tmp_path):
    """A real TensorBoard process: busy port -> the next one, which answers HTTP."""
    root = _fake_pipeline_root(tmp_path, execution_ids=(3,))
    with _held_port() as busy:
        server = subprocess.Popen(
            [sys.executable, "-m", "tools.tensorboard", "--pipeline-root", str(root),
             "--port", str(busy)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            lines = [server.stdout.readline() for _ in range(3)]
            assert lines[0].startswith(f"tensorboard: port {busy} is in use; using "), lines
            url = lines[2].split("open ", 1)[1].split()[0]
            deadline, status = time.monotonic() + 120, None
            while status is None and time.monotonic() < deadline:
                assert server.poll() is None, server.stdout.read()
                try:
                    status = _get(url + "data/runs")
                except OSError:
                    time.sleep(0.5)
            assert status == 200
            assert int(url.rstrip("/").rsplit(":", 1)[1]) > busy
        finally:
            server.terminate()
            server.wait(timeout=30)
            server.stdout.close()
