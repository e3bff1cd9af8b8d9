"""The whole pipeline through runner_local.py, on generated photos and a random MobileNet,
then a photo classified with the pushed model through label_image.py."""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from tests.support import make_image_folder, make_random_hub_mobilenet

REPO = pathlib.Path(__file__).resolve().parent.parent
CLASSES = {"circle_red": 16, "square_green": 16, "triangle_blue": 16}
ALL_NODES = {
    "ImageExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "Transform",
    "FineTuner", "Trainer", "latest_blessed_model_resolver", "Evaluator", "TestEvaluator", "Pusher",
    "RunReport",
}


def _run(args, timeout=900):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=timeout,
    )


def _component_states(pipeline_root):
    """{node id: state} of the newest run, from ML Metadata."""
    from pipeline import metadata_queries

    store = metadata_queries.open_store(str(pipeline_root / "metadata.db"))
    runs = store.get_contexts_by_type("pipeline_run")
    latest = max(runs, key=lambda context: context.create_time_since_epoch)
    return {node: state for node, state, _ in metadata_queries.component_times(store, latest.id)}


def _eval_accuracy_line(stdout):
    (line,) = [line for line in stdout.splitlines() if "eval accuracy" in line]
    return line


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    photos = make_image_folder(root / "photos", CLASSES, size=(64, 48))
    hub_module = make_random_hub_mobilenet(root / "hub", alpha=0.25, resolution=128)
    flags = [
        "runner_local.py",
        # The design's own shape: photos squashed to the module's size, the plain view, a
        # softmax head and a FineTuner; the defaults' shape (the RBF head) runs in
        # tests/test_faults.py and the runner tests.
        f"--data-dir={photos}", f"--model-handle={hub_module}", "--image-size=128",
        "--resize=squash", "--views=plain", "--head=logistic", "--fine-tune-epochs=1",
        "--train-batch-size=16", "--testing-percentage=20", "--validation-percentage=20",
        "--min-accuracy=0.5", f"--pipeline-root={root / 'out'}",
    ]
    completed = _run(flags)
    return root, flags, completed


def test_pipeline_completes_every_component_and_pushes(first_run):
    root, _, completed = first_run
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]
    states = _component_states(root / "out")
    assert set(states) == ALL_NODES
    assert set(states.values()) == {"COMPLETE"}, states
    versions = [path for path in (root / "out" / "serving_model").iterdir() if path.is_dir()]
    assert len(versions) == 1 and (versions[0] / "saved_model.pb").exists()
    assert f"pushed model   {versions[0]}" in completed.stdout


def test_conversion_report_and_tensorboard_logs(first_run):
    root, _, _ = first_run
    reports = list((root / "out" / "artifacts" / "ImageExampleGen").rglob("conversion_report.json"))
    report = json.loads(reports[0].read_text())
    assert report["class_names"] == sorted(CLASSES)
    assert report["num_images"] == sum(CLASSES.values())
    assert report["skipped"] == []
    per_class = {name: sum(splits.values()) for name, splits in report["counts"].items()}
    assert per_class == CLASSES
    logs = root / "out" / "artifacts" / "Trainer" / "model_run"
    assert list(logs.rglob("train/events.out.tfevents.*"))
    assert list(logs.rglob("validation/events.out.tfevents.*"))


def test_statistics_treat_photos_as_bytes_not_as_distinct_strings(first_run):
    # Counting each photo as a distinct string value held every photo in memory at once.
    from tensorflow_metadata.proto.v0 import statistics_pb2

    root, _, _ = first_run
    (path,) = (root / "out" / "artifacts" / "StatisticsGen").rglob("Split-train/FeatureStats.pb")
    stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(path.read_bytes())
    features = {f.path.step[0]: f for f in stats.datasets[0].features}
    assert features["image/encoded"].WhichOneof("stats") == "bytes_stats"
    assert features["image/encoded"].bytes_stats.max_num_bytes > 0
    assert features["image/class/text"].string_stats.unique == len(CLASSES)


def _image_summary_tags(folder: pathlib.Path) -> dict[str, set[int]]:
    """{tag: steps} of the image summaries in a TensorBoard run folder."""
    import tensorflow as tf

    tags: dict[str, set[int]] = {}
    for path in folder.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "images":
                    tags.setdefault(value.tag, set()).add(event.step)
    return tags


def test_tensorboard_shows_sample_images_and_the_confusion_matrices(first_run):
    artifacts = first_run[0] / "out" / "artifacts"
    (run_dir,) = (artifacts / "Trainer" / "model_run").iterdir()
    assert set(_image_summary_tags(run_dir / "train")) == {f"samples/{name}" for name in CLASSES}
    # The fitted head's matrix; the FineTuner's run has its head's and fine-tuning's last one.
    assert _image_summary_tags(run_dir / "validation")["eval_confusion_matrix"] == {0}
    (fine_tune_dir,) = (artifacts / "FineTuner" / "model_run").iterdir()
    assert _image_summary_tags(fine_tune_dir / "validation")["eval_confusion_matrix"] == {0}


def test_run_report_is_written_and_the_summary_prints_its_path(first_run):
    import base64
    import io
    import re

    from PIL import Image

    root, _, completed = first_run
    (report,) = (root / "out" / "artifacts" / "RunReport").rglob("report.html")
    assert f"run report     {report}" in completed.stdout
    page = report.read_text()
    assert "<h2>Results on the test split</h2>" in page and "circle_red" in page
    assert "<h2>Your data</h2>" in page and "Suspected label errors: " in page
    # One line each for the copies ImageExampleGen found and the Trainer's label suspects,
    # whose list lies beside the model.
    (suspects,) = [line for line in completed.stdout.splitlines() if "label suspects" in line]
    issues_path = pathlib.Path(suspects.rsplit(": ", 1)[1])
    assert issues_path.name == "label_issues.json" and issues_path.parent.parent.name == "model"
    issues = json.loads(issues_path.read_text())
    checked = sum(issues["checked"].values())
    assert suspects.startswith(f"  label suspects {issues['count']} of {checked} train and eval")
    assert re.search(r"near-copies +\d+ groups of near-duplicates", completed.stdout)
    sources = re.findall(r'<img src="data:image/png;base64,([^"]*)"', page)
    assert len(sources) == page.count("<img ") >= 5
    for source in sources:
        assert Image.open(io.BytesIO(base64.b64decode(source))).format == "PNG"


def test_label_image_classifies_with_the_pushed_model(first_run):
    root, _, _ = first_run
    photo = sorted((root / "photos" / "square_green").iterdir())[0]
    completed = _run(
        ["label_image.py", "--json", "--model", str(root / "out" / "serving_model"), str(photo)],
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["path"] == str(photo)
    assert {item["label"] for item in result["top_k"]} == set(CLASSES)
    assert abs(sum(item["score"] for item in result["top_k"]) - 1) < 1e-3
    assert result["label"] == "square_green"


def test_pushed_version_holds_tflite_models_and_the_int8_one_classifies(first_run):
    root, _, _ = first_run
    versions = [path for path in (root / "out" / "serving_model").iterdir() if path.is_dir()]
    tflite = max(versions, key=lambda path: int(path.name)) / "tflite"
    assert sorted(path.name for path in tflite.iterdir()) == [
        "labels.txt", "model_float.tflite", "model_int8.tflite", "preprocessing.json"
    ]
    assert (tflite / "labels.txt").read_text().split() == sorted(CLASSES)
    photo = sorted((root / "photos" / "square_green").iterdir())[0]
    completed = _run(
        ["label_image.py", "--json", "--model", str(tflite / "model_int8.tflite"), str(photo)],
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout.strip().splitlines()[-1])["label"] == "square_green"


def test_rerun_with_unchanged_photos_is_all_cached(first_run):
    root, flags, _ = first_run
    completed = _run(flags)
    assert completed.returncode == 0, completed.stderr[-5000:]
    states = _component_states(root / "out")
    # The summary reports the candidate's accuracy, not TFMA's baseline or diff values.
    first_stdout = first_run[2].stdout
    assert _eval_accuracy_line(completed.stdout) == _eval_accuracy_line(first_stdout)
    cached = {node for node, state in states.items() if state == "CACHED"}
    # The Evaluator (and so the Pusher) runs again: it now has a baseline, the blessed model.
    assert cached == ALL_NODES - {"latest_blessed_model_resolver", "Evaluator", "Pusher"}, states
    # ... but the Pusher sees that the newest version already holds this model.
    assert len(list((root / "out" / "serving_model").iterdir())) == 1


def _inspect(capsys, *args):
    """stdout of `python -m tools.inspect_metadata ARGS`, run in-process."""
    from tools import inspect_metadata

    code = inspect_metadata.main(list(args))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def test_inspect_lists_each_run_and_its_executions(first_run, capsys):
    from pipeline import metadata_queries

    out = str(first_run[0] / "out")
    store = metadata_queries.open_store(str(first_run[0] / "out" / "metadata.db"), read_only=True)
    run_ids = {context.name for context in store.get_contexts_by_type("pipeline_run")}
    runs = json.loads(_inspect(capsys, "runs", "--json", "--pipeline-root", out))["runs"]
    # One COMPLETE run per pipeline run (one, or two once the cached rerun has run).
    assert {run["run_id"] for run in runs} == run_ids and len(runs) == len(run_ids) >= 1
    assert {run["state"] for run in runs} == {"COMPLETE"}
    assert [run["executions"] for run in runs] == [len(ALL_NODES)] * len(runs)
    assert runs[0]["cache_hits"] == 0
    table = _inspect(capsys, "runs", "--pipeline-root", out)
    assert all(run_id in table for run_id in run_ids) and "COMPLETE" in table
    executions = json.loads(_inspect(capsys, "executions", "--json", "--pipeline-root", out))
    assert executions["run_id"] == runs[-1]["run_id"]
    assert {row["component"] for row in executions["executions"]} == ALL_NODES
    table = _inspect(capsys, "executions", "--run", runs[0]["run_id"], "--pipeline-root", out)
    assert all(node in table for node in ALL_NODES)


def test_inspect_artifacts_shows_the_image_example_gen_examples(first_run, capsys):
    out = first_run[0] / "out"
    (examples_dir,) = [
        path for path in (out / "artifacts" / "ImageExampleGen" / "examples").iterdir()
        if path.is_dir()
    ]
    table = _inspect(capsys, "artifacts", "--type", "Examples", "--pipeline-root", str(out))
    assert str(examples_dir) in table and "input_fingerprint" in table
    assert "num_near_duplicate_groups" in table and "num_label_conflicts" in table
    models = _inspect(capsys, "artifacts", "--type", "Model", "--pipeline-root", str(out))
    assert "num_label_suspects" in models and "head_cv_accuracy" in models
    document = json.loads(
        _inspect(capsys, "artifacts", "--type", "Examples", "--json", "--pipeline-root", str(out))
    )
    assert str(examples_dir) in {artifact["uri"] for artifact in document["artifacts"]}


def test_inspect_lineage_of_the_pushed_model_reaches_the_photos(first_run, capsys):
    root = first_run[0]
    document = json.loads(_inspect(capsys, "lineage", "--json", "--pipeline-root",
                                   str(root / "out")))
    assert document["artifact"]["type"] == "PushedModel"
    assert document["artifact"]["custom_properties"]["pushed"] == 1
    components = [component for level in document["chain"] for component in level]
    assert components[0] == "Pusher"
    assert {"Evaluator", "Trainer", "Transform", "ImageExampleGen"} <= set(components)
    assert pathlib.Path(document["input_base"]).resolve() == (root / "photos").resolve()
    assert document["input_fingerprint"]
    table = _inspect(capsys, "lineage", "--pipeline-root", str(root / "out"))
    assert "chain: Pusher <- " in table and f"image folder  {document['input_base']}" in table


def test_inspect_without_a_store_is_one_line_and_exit_2(tmp_path, capsys):
    from tools import inspect_metadata

    assert inspect_metadata.main(["lineage", "--pipeline-root", str(tmp_path / "none")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert str(tmp_path / "none" / "metadata.db") in line and "runner_local.py" in line


def test_a_worse_model_is_not_blessed_and_the_pushed_model_stays(first_run):
    """Runs last: a retrain that is worse than the blessed model must not be pushed."""
    root, flags, _ = first_run
    serving = root / "out" / "serving_model"
    versions_before = sorted(path.name for path in serving.iterdir())
    # A head regularised to nothing: it predicts the most frequent class, near chance on 3
    # classes. With --min-accuracy 0 only the "not worse than the last blessed model"
    # threshold can refuse it. Only the final head's settings change, so the FineTuner's
    # output is reused.
    worse = [flag for flag in flags if not flag.startswith("--min-accuracy")]
    worse += ["--head-c=1e-9", "--min-accuracy=0"]
    completed = _run(worse)
    assert completed.returncode == 0, completed.stderr[-5000:]
    assert "pushed model   none: the model was not blessed" in completed.stdout
    # Only head settings changed: every photo's features came from the bottleneck cache.
    output = completed.stdout + completed.stderr
    assert re.search(r"features of \d+ photos x 1 views in \d+ s \(0 photos computed", output), \
        output[-3000:]
    states = _component_states(root / "out")
    assert states["Trainer"] == "COMPLETE" and states["Evaluator"] == "COMPLETE"
    assert states["FineTuner"] == "CACHED" and states["Transform"] == "CACHED", states
    assert sorted(path.name for path in serving.iterdir()) == versions_before
