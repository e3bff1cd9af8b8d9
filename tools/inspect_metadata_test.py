"""Tests of `python -m tools.inspect_metadata` on small ML Metadata stores built by hand:
in memory (`fake_database`) for the logic, a SQLite file for the command line (the stores of
pipeline/metadata_queries_test.py). No pipeline run."""

import json

import pytest
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2 as mlmd

from pipeline import metadata_queries as queries
from pipeline.metadata_queries_test import FINGERPRINT, PHOTOS, StoreBuilder, build_store
from tools import inspect_metadata as inspect
from tools import metadata_format as fmt


@pytest.fixture
def fake_store():
    config = mlmd.ConnectionConfig()
    config.fake_database.SetInParent()
    store = metadata_store.MetadataStore(config)
    return store, build_store(store)


@pytest.fixture
def sqlite_root(tmp_path):
    build_store(queries.open_store(str(tmp_path / "metadata.db")))
    return tmp_path


# --- pure helpers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "states,expected",
    [
        (["COMPLETE", "CACHED", "COMPLETE"], "COMPLETE"),
        (["COMPLETE", "FAILED", "RUNNING"], "FAILED"),
        (["COMPLETE", "RUNNING"], "RUNNING"),
        (["COMPLETE", "NEW"], "RUNNING"),
        ([], "RUNNING"),
    ],
)
def test_run_state(states, expected):
    assert inspect.run_state(states) == expected


def test_values_are_decoded_and_shortened():
    value = mlmd.Value()
    value.struct_value.fields["__value__"].string_value = '{"eval": 1.0}'
    assert queries.value_of(value) == {"eval": 1.0}
    value = mlmd.Value(int_value=3)
    assert queries.value_of(value) == 3
    assert fmt.short("a\n  b") == "a b"
    assert fmt.short("x" * 100, limit=10) == "xxxxxxx..."
    assert fmt.short(["train", "eval"]) == '["train", "eval"]'


def test_format_table_aligns_columns_and_numbers():
    table = fmt.format_table(["name", "seconds"], [["Trainer", 12.5], ["Pusher", 0.1]])
    assert table.splitlines() == [
        "name     seconds",
        "-------  -------",
        "Trainer     12.5",
        "Pusher       0.1",
    ]


def test_levels_are_longest_distances_from_the_start():
    # Pusher(5) <- Evaluator(4), Trainer(3); Evaluator <- Trainer, ExampleGen(1);
    # Trainer <- Transform(2); Transform <- ExampleGen.
    producers = {5: [3, 4], 4: [3, 1], 3: [2], 2: [1], 1: []}
    assert inspect.lineage_levels(5, producers) == [[5], [4], [3], [2], [1]]
    assert inspect.lineage_levels(3, {3: [1, 2], 1: [], 2: []}) == [[3], [1, 2]]
    assert fmt.chain_text([["Pusher"], ["Evaluator", "Trainer"]]) == (
        "Pusher <- Evaluator/Trainer"
    )


# --- reading a store --------------------------------------------------------------------


def test_runs_have_states_executions_and_cache_hits(fake_store):
    store, _ = fake_store
    runs = inspect.list_runs(store)
    rows = [(run["run_id"], run["state"], run["executions"], run["cache_hits"]) for run in runs]
    assert rows == [
        ("run-1", "COMPLETE", 5, 0),
        ("run-2", "COMPLETE", 4, 2),
        ("run-3", "FAILED", 1, 0),
    ]
    assert all(run["duration_seconds"] >= 0 for run in runs)


def test_executions_of_the_newest_or_a_named_run(fake_store):
    store, _ = fake_store
    assert inspect.list_executions(store)["run_id"] == "run-3"
    document = inspect.list_executions(store, "run-2")
    assert [(row["component"], row["state"], row["cached"]) for row in document["executions"]] == [
        ("ImageExampleGen", "CACHED", True),
        ("Trainer", "CACHED", True),
        ("Evaluator", "COMPLETE", False),
        ("Pusher", "COMPLETE", False),
    ]
    with pytest.raises(inspect.InspectError, match="no run 'run-9'.*newest: run-3"):
        inspect.list_executions(store, "run-9")


def test_artifacts_of_a_type(fake_store):
    store, ids = fake_store
    (examples,) = inspect.list_artifacts(store, "Examples")
    assert examples["id"] == ids["examples"]
    assert examples["uri"] == "/root/artifacts/ImageExampleGen/examples/1"
    assert examples["custom_properties"] == {"input_fingerprint": FINGERPRINT, "num_images": 3}
    assert [item["id"] for item in inspect.list_artifacts(store, "PushedModel")] == [
        ids["pushed"], ids["not_pushed"]
    ]
    with pytest.raises(inspect.InspectError, match="known types: Examples, Model"):
        inspect.list_artifacts(store, "Nope")


def test_lineage_of_the_pushed_model_reaches_the_image_folder(fake_store):
    store, ids = fake_store
    document = inspect.lineage(store)
    # The newest PushedModel was not pushed (pushed=0), so the default is run-1's.
    assert document["artifact"]["id"] == ids["pushed"]
    assert document["chain"] == [
        ["Pusher"], ["Evaluator"], ["Trainer"], ["ImageExampleGen", "ImportSchemaGen"]
    ]
    assert document["input_base"] == PHOTOS
    assert document["input_fingerprint"] == FINGERPRINT
    steps = {step["component"]: step for step in document["steps"]}
    (model_input,) = [item for item in steps["Pusher"]["inputs"] if item["key"] == "model"]
    # The Trainer of run-1 produced the model; run-2's cached Trainer only reused it.
    assert model_input["producer_execution_id"] == ids["trainer"]
    assert model_input["cached_in"] == [ids["cached_trainer"]]
    assert steps["ImageExampleGen"]["execution_id"] == ids["example_gen"]
    assert steps["ImageExampleGen"]["run_id"] == "run-1"
    text = fmt.format_lineage(document)
    assert "chain: Pusher <- Evaluator <- Trainer <- ImageExampleGen/ImportSchemaGen" in text
    assert f"image folder  {PHOTOS}" in text


def test_lineage_of_an_artifact_by_id_and_of_a_root_artifact(fake_store):
    store, ids = fake_store
    assert inspect.lineage(store, ids["model"])["chain"] == [
        ["Trainer"], ["ImageExampleGen", "ImportSchemaGen"]
    ]
    schema = inspect.lineage(store, ids["schema"])
    assert schema["chain"] == [["ImportSchemaGen"]] and schema["input_base"] is None
    with pytest.raises(inspect.InspectError, match="no artifact with id 999"):
        inspect.lineage(store, 999)


def test_fingerprint_falls_back_to_the_examples_artifact():
    config = mlmd.ConnectionConfig()
    config.fake_database.SetInParent()
    store = metadata_store.MetadataStore(config)
    build = StoreBuilder(store)
    examples = build.artifact("Examples", "/e", input_fingerprint="from-artifact")
    build.execute(build.run("r"), "ImageExampleGen", outputs=[("examples", examples)],
                  input_base=PHOTOS)
    document = inspect.lineage(store, examples.id)
    assert (document["input_base"], document["input_fingerprint"]) == (PHOTOS, "from-artifact")


# --- the command line -------------------------------------------------------------------


def test_missing_store_is_one_line_and_exit_2(tmp_path, capsys):
    assert inspect.main(["runs", "--pipeline-root", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert str(tmp_path / "metadata.db") in line and "python runner_local.py" in line
    assert not (tmp_path / "metadata.db").exists()


def test_every_command_prints_a_table_or_one_json_document(sqlite_root, capsys):
    root = ["--pipeline-root", str(sqlite_root)]
    assert inspect.main(["runs", *root]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == [
        "run", "id", "state", "started", "seconds", "executions", "cache", "hits"
    ]
    assert "run-3" in table and "FAILED" in table
    for command in (["runs"], ["executions", "--run", "run-1"], ["artifacts", "--type", "Model"],
                    ["lineage"]):
        assert inspect.main([*command, *root, "--json"]) == 0
        document = json.loads(capsys.readouterr().out)
        assert document["metadata"] == str(sqlite_root / "metadata.db")
    assert document["input_base"] == PHOTOS
    assert inspect.main(["artifacts", "--type", "Examples", "--metadata",
                         str(sqlite_root / "metadata.db")]) == 0
    assert "/root/artifacts/ImageExampleGen/examples/1" in capsys.readouterr().out


def test_unknown_run_is_one_line_and_exit_2(sqlite_root, capsys):
    assert inspect.main(["executions", "--run", "nope", "--pipeline-root", str(sqlite_root)]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_lineage_defaults_to_the_newest_model_when_nothing_was_pushed():
    config = mlmd.ConnectionConfig()
    config.fake_database.SetInParent()
    store = metadata_store.MetadataStore(config)
    build = StoreBuilder(store)
    with pytest.raises(inspect.InspectError, match="no pushed model and no Model"):
        inspect.lineage(store)
    build.artifact("PushedModel", "/p", pushed=0)
    build.artifact("Model", "/m/1")
    newest = build.artifact("Model", "/m/2")
    assert inspect.lineage(store)["artifact"]["id"] == newest.id
