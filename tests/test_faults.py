"""Faults during a run: SIGKILL in each component in turn, then resume; two runs on one root.

A reference run gives the components' order (and meets a second run started beside it). Then, on
a fresh pipeline root, each component in turn is SIGKILLed from outside while its executor is
writing its outputs (tests/support/pausing_runner.py holds it there, so the kill never lands
by luck before or after the step), and the command is started again. The resumed runs must reuse
what had finished, never consume an output of a killed step, and end with a complete push.
"""

import os
import pathlib
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.support import make_image_folder, make_random_hub_mobilenet
from tests.support.pausing_runner import PAUSE_MARKER

REPO = pathlib.Path(__file__).resolve().parent.parent
CLASSES = {"circle_red": 12, "square_green": 12, "triangle_blue": 12}
# The resolver only reads ML Metadata: there is nothing in it to kill.
RESOLVER = "latest_blessed_model_resolver"
_RUNNING = re.compile(r"Component (\S+) is running\.")
_LINE_TIMEOUT_S = 600
# As in a user's shell: conftest's TF_CPP_MIN_LOG_LEVEL would let TensorFlow's C++ noise through.
_USER_ENV = {
    **{name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"},
    "PYTHONUNBUFFERED": "1",
}


class Run:
    """runner_local.py in its own process group, its stderr read line by line."""

    def __init__(self, flags, pause_in=None):
        command = ["runner_local.py"]
        if pause_in:
            command = ["-m", "tests.support.pausing_runner", "--pause-in", pause_in]
        self.process = subprocess.Popen(
            [sys.executable, *command, *flags], cwd=REPO,
            env=_USER_ENV,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        self.lines: queue.Queue = queue.Queue()
        self.stderr: list[str] = []
        self.stdout: list[str] = []
        self.readers = [
            threading.Thread(target=self._read_stderr, daemon=True),
            threading.Thread(target=lambda: self.stdout.extend(self.process.stdout), daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def _read_stderr(self):
        for line in self.process.stderr:
            self.stderr.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, text):
        """The first stderr line containing `text`."""
        deadline = time.time() + _LINE_TIMEOUT_S
        while time.time() < deadline:
            line = self.lines.get(timeout=_LINE_TIMEOUT_S)
            if line is None:
                pytest.fail(f"run ended before {text!r}:\n{''.join(self.stderr)[-3000:]}")
            if text in line:
                return line
        pytest.fail(f"no {text!r} within {_LINE_TIMEOUT_S} s")

    def kill(self):
        os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait()

    def finish(self):
        self.process.wait(timeout=_LINE_TIMEOUT_S)
        for reader in self.readers:
            reader.join()
        return self.process.returncode, "".join(self.stdout), "".join(self.stderr)


def _flags(photos, hub_module, pipeline_root):
    return [
        f"--data-dir={photos}", f"--model-handle={hub_module}",
        # The default pipeline: the FineTuner (--fine-tune-epochs) is one more TFX Trainer,
        # resumed by the same launcher, and would add a killed attempt of its own.
        "--train-batch-size=16",
        # One view: faults do not depend on the views, and each attempt's Trainer, Evaluators
        # and report then run the network once a photo, not twice.
        "--views=plain",
        "--testing-percentage=20", "--validation-percentage=20", "--min-accuracy=0",
        f"--pipeline-root={pipeline_root}",
    ]


def _execution_order(flags):
    """The components in the order LocalDagRunner runs them: the pipeline's topological order."""
    from pipeline import cli
    from pipeline.pipeline import create_pipeline

    config = cli.config_from_args(cli.build_parser().parse_args(flags))
    return [node.id for node in create_pipeline(config).components if node.id != RESOLVER]


def _store(pipeline_root):
    from pipeline import metadata_queries

    return metadata_queries.open_store(str(pipeline_root / "metadata.db"), read_only=True)


def _runs(store):
    return sorted(store.get_contexts_by_type("pipeline_run"),
                  key=lambda context: context.create_time_since_epoch)


def _states(store, run):
    from pipeline import metadata_queries

    return {node: state for node, state, _ in metadata_queries.component_times(store, run.id)}


@pytest.fixture(scope="module")
def killed_in_turn(tmp_path_factory):
    """Kills a run in each component in turn, then runs it to the end.

    While the first attempt is held inside ImageExampleGen, a second run is started on the
    same pipeline root. Returns what each step saw, for the tests below to check.
    """
    root = tmp_path_factory.mktemp("faults")
    photos = make_image_folder(root / "photos", CLASSES, size=(64, 48))
    hub_module = make_random_hub_mobilenet(root / "hub", alpha=0.25, resolution=128)
    pipeline_root = root / "out"
    flags = _flags(photos, hub_module, pipeline_root)
    order = _execution_order(flags)
    attempts, second = [], None
    for node in order:
        run = Run(flags, pause_in=node)
        stage = run.wait_for(f"{PAUSE_MARKER} {node} ").split()[-1]
        if second is None:
            second = subprocess.run(
                [sys.executable, "runner_local.py", *flags], cwd=REPO, capture_output=True,
                text=True, timeout=300, env=_USER_ENV,
            )
        code = run.kill()
        store = _store(pipeline_root)
        attempts.append((node, stage, code, _states(store, _runs(store)[-1]), run.process.pid))
    final = Run(flags).finish()
    return pipeline_root, order, attempts, second, final


def test_a_second_run_on_the_same_root_stops_in_one_line(killed_in_turn):
    pipeline_root, _, attempts, second, _ = killed_in_turn
    first_pid = attempts[0][-1]
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    (line,) = lines
    assert line.startswith(f"runner_local.py: error: another run (pid {first_pid}, started ")
    assert f"is using --pipeline-root {pipeline_root}; wait for it" in line


def test_each_kill_lands_inside_its_component_and_finished_steps_are_reused(killed_in_turn):
    _, order, attempts, _, _ = killed_in_turn
    assert [attempt[0] for attempt in attempts] == order
    assert {"ImageExampleGen", "Transform", "Trainer", "Evaluator", "Pusher"} <= set(order)
    for index, (node, _, code, states, _) in enumerate(attempts):
        assert code == -signal.SIGKILL
        assert states[node] == "RUNNING", f"{node} was not running at the kill: {states}"
        if index:
            # The step killed last time ran again, whole; the ones before it were reused,
            # except the Evaluator once it has blessed a model: that is now its baseline.
            assert states[order[index - 1]] == "COMPLETE", states
            reused = {other for other in order[: index - 1] if states[other] == "CACHED"}
            assert reused - {"Evaluator"} == set(order[: index - 1]) - {"Evaluator"}, states
    stages = {node: stage for node, stage, *_ in attempts}
    # The long steps were killed with their outputs half written.
    assert {stages[node] for node in ("ImageExampleGen", "Transform", "Trainer")} == {"writing"}


def _executions_by_node(store):
    from pipeline import metadata_queries

    node_of = metadata_queries.execution_node_ids(store)
    by_node = {}
    for execution in store.get_executions():
        by_node.setdefault(node_of.get(execution.id), []).append(execution)
    return by_node


def _assert_inputs_come_from_complete_steps(store, pipeline_root):
    """No execution ever read what a killed (unfinished) execution wrote.

    TFX registers a step's output artifacts only when the step finishes, so a killed step has
    none in ML Metadata, and its half-written folders (`artifacts/<node>/<output>/<execution
    id>/`, left on disk) are never an artifact's URI. A cached execution records the artifacts
    it reuses as outputs too, so an artifact is sound when one of its writers is COMPLETE.
    """
    from ml_metadata.proto import metadata_store_pb2

    Event = metadata_store_pb2.Event
    executions = store.get_executions()
    complete = {execution.id for execution in executions
                if execution.last_known_state == metadata_store_pb2.Execution.COMPLETE}
    killed = {execution.id for execution in executions
              if execution.last_known_state == metadata_store_pb2.Execution.RUNNING}
    events = store.get_events_by_execution_ids([execution.id for execution in executions])
    writers = {}
    for event in events:
        if event.type == Event.OUTPUT:
            assert event.execution_id not in killed, f"killed execution {event.execution_id}"
            writers.setdefault(event.artifact_id, set()).add(event.execution_id)
    for event in events:
        if event.type == Event.INPUT:
            assert writers.get(event.artifact_id, set()) & complete, (
                f"execution {event.execution_id} read artifact {event.artifact_id}, written by "
                f"unfinished executions {writers.get(event.artifact_id)}"
            )
    half_written = [path for path in (pipeline_root / "artifacts").glob("*/*/*")
                    if path.name.isdigit() and int(path.name) in killed]
    assert half_written, "the kills left no half-written output folder: were they too late?"
    uris = {pathlib.Path(artifact.uri) for artifact in store.get_artifacts()}
    assert not uris & set(half_written)


def test_the_resumed_run_completes_without_reading_a_killed_steps_output(killed_in_turn):
    from ml_metadata.proto.metadata_store_pb2 import Execution

    pipeline_root, order, _, _, (code, stdout, stderr) = killed_in_turn
    assert code == 0, stderr[-5000:]
    assert "Traceback" not in stderr
    store = _store(pipeline_root)
    states = _states(store, _runs(store)[-1])
    assert states[order[-1]] == "COMPLETE", states
    assert set(states.values()) <= {"COMPLETE", "CACHED"}, states
    assert {states[node] for node in order[: order.index("Trainer") + 1]} == {"CACHED"}, states
    _assert_inputs_come_from_complete_steps(store, pipeline_root)
    finished = (Execution.COMPLETE, Execution.CACHED)
    killed = {node for node, executions in _executions_by_node(store).items()
              if any(execution.last_known_state not in finished for execution in executions)}
    assert killed == set(order), killed

    versions = sorted((pipeline_root / "serving_model").iterdir())
    assert versions and [path.name for path in versions if not path.name.isdigit()] == []
    for version in versions:
        assert (version / "saved_model.pb").exists() and (version / "variables").is_dir()
    assert f"pushed model   {versions[-1]}" in stdout
