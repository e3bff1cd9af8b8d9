"""The bad-input corpus through the command line, as a user meets it (issue 19).

`tests.support.example_gen_runner` is runner_local.py cut down to ImageExampleGen: the real
preflight, TFX launcher, our driver, TFX's cache and the executor. The corpus holds every kind of
entry docs/bad_input.md lists; it converts with exit status 0 and no traceback, a rerun is a
cache hit, and an edit two levels down is not. Each folder that must stop the run stops in one
line with exit status 2 (in-process: the same cli.main, without a process start per case).
"""

import glob
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from components.image_example_gen import scan
from tests.support.images import STOP_CASES, edit_in_place, make_bad_input_corpus

REPO = pathlib.Path(__file__).resolve().parent.parent
# As in a user's shell: conftest's TF_CPP_MIN_LOG_LEVEL would let TensorFlow's C++ noise through.
_USER_ENV = {
    **{name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"},
    "PYTHONUNBUFFERED": "1",
}
_LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d ")


def _flags(photos, root):
    hub = root / "hub"  # never loaded: ImageExampleGen is the only step
    hub.mkdir(exist_ok=True)
    (hub / "saved_model.pb").touch()
    return [f"--data-dir={photos}", f"--model-handle={hub}", f"--pipeline-root={root / 'out'}"]


def _run(flags):
    return subprocess.run(
        [sys.executable, "-m", "tests.support.example_gen_runner", *flags], cwd=REPO,
        env=_USER_ENV, capture_output=True, text=True, timeout=600,
    )


def _example_gen_runs(pipeline_root):
    """(state, Examples artifact's input_fingerprint) of ImageExampleGen in each run, in order."""
    from pipeline import metadata_queries

    store = metadata_queries.open_store(str(pipeline_root / "metadata.db"), read_only=True)
    runs = sorted(store.get_contexts_by_type("pipeline_run"),
                  key=lambda context: context.create_time_since_epoch)
    examples_type = store.get_artifact_type("Examples").id
    outcome = []
    for run in runs:
        (state,) = [state for node, state, _ in metadata_queries.component_times(store, run.id)
                    if node == "ImageExampleGen"]
        (examples,) = [artifact for artifact in store.get_artifacts_by_context(run.id)
                       if artifact.type_id == examples_type]
        outcome.append((state, examples.custom_properties["input_fingerprint"].string_value))
    return outcome


@pytest.fixture(scope="module")
def corpus_runs(tmp_path_factory):
    """The corpus converted, converted again unchanged, then again after a nested edit."""
    root = tmp_path_factory.mktemp("bad_input_cli")
    photos = make_bad_input_corpus(root / "photos")
    flags = _flags(photos, root)
    first, unchanged = _run(flags), _run(flags)
    edit_in_place(photos / "ant" / "nested" / "deeper" / "inner.jpg")
    edited = _run(flags)
    return photos, root / "out", (first, unchanged, edited)


def test_the_corpus_converts_with_no_traceback_and_every_entry_reported(corpus_runs):
    photos, pipeline_root, runs = corpus_runs
    for run in runs:
        assert run.returncode == 0, run.stderr[-3000:]
        assert "Traceback" not in run.stderr
        # A file name's line break never splits a log line.
        assert all(_LOG_LINE.match(line) for line in run.stderr.splitlines()), run.stderr
    (report_path,) = glob.glob(
        str(pipeline_root / "artifacts" / "ImageExampleGen" / "examples" / "1" / "*.json")
    )
    report = json.loads(pathlib.Path(report_path).read_text())
    skipped = {item["file"]: item["reason"] for item in report["skipped"]}
    # Root reads a chmod 000 file, so locked.jpg is skipped only for other users.
    expected = {
        "ant/broken.jpg", "ant/caf\\xe9.jpg", "ant/dossier\\xff", "ant/pipe.jpg",
        "ant/selfloop.jpg", "ant/socket.png", "ant/zeros.jpg", "ant/empty.jpg",
        "ant/truncated.jpg", "ant/random.jpg", "ant/bomb.png", "ant/tiny.png",
    } | ({"ant/locked.jpg"} if os.geteuid() else set())
    assert set(skipped) == expected
    assert skipped["ant/pipe.jpg"] == "a named pipe (FIFO), not a regular file; never opened"
    assert {item["file"] for item in report["ignored"]} >= {"ant/bee_link", "ant/nested/loop"}
    assert set(report["class_names"]) == {"ant", "bee", "cat"}
    assert sum(report["counts"]["cat"].values()) == 4


def test_a_rerun_with_the_same_photos_is_a_cache_hit(corpus_runs):
    _, pipeline_root, _ = corpus_runs
    (first, first_print), (second, second_print), _ = _example_gen_runs(pipeline_root)
    assert (first, second) == ("COMPLETE", "CACHED")
    assert second_print == first_print


def test_an_edit_two_levels_down_converts_again_with_a_true_fingerprint(corpus_runs):
    photos, pipeline_root, _ = corpus_runs
    (_, first_print), _, (edited, edited_print) = _example_gen_runs(pipeline_root)
    assert edited == "COMPLETE" and edited_print != first_print
    listing = scan.list_photos(str(photos), scan.discover_classes(str(photos)))
    assert edited_print == scan.folder_fingerprint(listing.photos)


@pytest.mark.parametrize("stop", STOP_CASES)
def test_a_folder_that_cannot_be_used_stops_in_one_line(tmp_path, capsys, stop):
    from pipeline import cli

    photos = make_bad_input_corpus(tmp_path / "photos", stop=stop)
    started = []
    code = cli.main(_flags(photos, tmp_path), run_pipeline=lambda *args: started.append(args))
    err = capsys.readouterr().err
    assert code == 2 and started == []
    (line,) = err.strip().splitlines()
    assert line.startswith("runner_local.py: error: ") and "Traceback" not in err
    assert str(photos) in line
