"""Tests of pipeline.metadata_queries on small ML Metadata stores built by hand with
ml_metadata's python API: in memory (`fake_database`), and a SQLite file for opening one.
tools/inspect_metadata_test.py builds its stores with StoreBuilder and build_store too."""

import pytest
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2 as mlmd

from pipeline import metadata_queries as queries

State = mlmd.Execution.State
PHOTOS = "/data/photos"
FINGERPRINT = "split:images,num_files:3,total_bytes:30"


class StoreBuilder:
    """Types, contexts, artifacts and executions of a tiny tfx_poets pipeline."""

    def __init__(self, store):
        self.store = store
        self.type_ids = {}
        for name in ("pipeline_run", "node"):
            self.type_ids[name] = store.put_context_type(mlmd.ContextType(name=name))
        self.type_ids["Component"] = store.put_execution_type(mlmd.ExecutionType(name="Component"))
        for name in ("Examples", "Schema", "Model", "ModelBlessing", "PushedModel"):
            self.type_ids[name] = store.put_artifact_type(mlmd.ArtifactType(name=name))
        self.nodes = {}

    def run(self, name):
        context = mlmd.Context(type_id=self.type_ids["pipeline_run"], name=name)
        (context.id,) = self.store.put_contexts([context])
        return context

    def _node(self, node_id):
        if node_id not in self.nodes:
            context = mlmd.Context(type_id=self.type_ids["node"], name=f"tfx_poets.{node_id}")
            (context.id,) = self.store.put_contexts([context])
            self.nodes[node_id] = context
        return self.nodes[node_id]

    def artifact(self, type_name, uri, **custom):
        artifact = mlmd.Artifact(type_id=self.type_ids[type_name], uri=uri)
        for key, value in custom.items():
            if isinstance(value, int):
                artifact.custom_properties[key].int_value = value
            else:
                artifact.custom_properties[key].string_value = value
        (artifact.id,) = self.store.put_artifacts([artifact])
        return artifact

    def execute(self, run, node_id, state=State.COMPLETE, inputs=(), outputs=(), **custom):
        execution = mlmd.Execution(type_id=self.type_ids["Component"], last_known_state=state)
        for key, value in custom.items():
            execution.custom_properties[key].string_value = value
        pairs = []
        for event_type, items in ((mlmd.Event.INPUT, inputs), (mlmd.Event.OUTPUT, outputs)):
            for key, artifact in items:
                event = mlmd.Event(type=event_type)
                event.path.steps.add().key = key
                event.path.steps.add().index = 0
                pairs.append((artifact, event))
        execution_id, _, _ = self.store.put_execution(execution, pairs, [run, self._node(node_id)])
        return execution_id


def build_store(store):
    """run-1 trains and pushes; run-2 is cached up to the Trainer and does not push (pushed=0);
    run-3 fails in its first execution. Returns {name: artifact or execution id}."""
    build = StoreBuilder(store)
    ids = {}
    run1 = build.run("run-1")
    examples = build.artifact("Examples", "/root/artifacts/ImageExampleGen/examples/1",
                              input_fingerprint=FINGERPRINT, num_images=3)
    schema = build.artifact("Schema", "/root/artifacts/ImportSchemaGen/schema/2")
    model = build.artifact("Model", "/root/artifacts/Trainer/model/3")
    blessing = build.artifact("ModelBlessing", "/root/artifacts/Evaluator/blessing/4", blessed=1)
    pushed = build.artifact("PushedModel", "/root/artifacts/Pusher/pushed_model/5", pushed=1,
                            pushed_destination="/root/serving_model/1")
    ids["example_gen"] = build.execute(run1, "ImageExampleGen", outputs=[("examples", examples)],
                                       input_base=PHOTOS, input_fingerprint=FINGERPRINT)
    build.execute(run1, "ImportSchemaGen", outputs=[("schema", schema)])
    ids["trainer"] = build.execute(run1, "Trainer", inputs=[("examples", examples),
                                                            ("schema", schema)],
                                   outputs=[("model", model)])
    build.execute(run1, "Evaluator", inputs=[("model", model), ("examples", examples)],
                  outputs=[("blessing", blessing)])
    build.execute(run1, "Pusher", inputs=[("model", model), ("model_blessing", blessing)],
                  outputs=[("pushed_model", pushed)])

    run2 = build.run("run-2")
    build.execute(run2, "ImageExampleGen", State.CACHED, outputs=[("examples", examples)])
    ids["cached_trainer"] = build.execute(run2, "Trainer", State.CACHED,
                                          inputs=[("examples", examples)],
                                          outputs=[("model", model)])
    unblessed = build.artifact("ModelBlessing", "/root/artifacts/Evaluator/blessing/8", blessed=0)
    build.execute(run2, "Evaluator", inputs=[("model", model), ("examples", examples)],
                  outputs=[("blessing", unblessed)])
    not_pushed = build.artifact("PushedModel", "/root/artifacts/Pusher/pushed_model/9", pushed=0)
    build.execute(run2, "Pusher", inputs=[("model", model), ("model_blessing", unblessed)],
                  outputs=[("pushed_model", not_pushed)])

    run3 = build.run("run-3")
    build.execute(run3, "ImageExampleGen", State.FAILED)
    ids.update(examples=examples.id, schema=schema.id, model=model.id, pushed=pushed.id,
               not_pushed=not_pushed.id)
    return ids


def in_memory_store():
    config = mlmd.ConnectionConfig()
    config.fake_database.SetInParent()
    return metadata_store.MetadataStore(config)


@pytest.fixture
def fake_store():
    store = in_memory_store()
    return store, build_store(store)


# --- opening a store --------------------------------------------------------------------


def test_a_missing_store_is_a_no_store_error_and_is_not_created(tmp_path):
    path = tmp_path / "metadata.db"
    with pytest.raises(queries.NoStoreError, match=f"no ML Metadata store at {path}"):
        queries.open_read_only(str(path))
    assert not path.exists()


def test_a_file_that_is_no_store_is_one_line_without_sql(tmp_path):
    path = tmp_path / "metadata.db"
    path.write_bytes(b"not a database at all " * 100)
    match = "cannot read .* as an ML Metadata store"
    with pytest.raises(queries.MetadataError, match=match) as error:
        queries.open_read_only(str(path))
    assert not isinstance(error.value, queries.NoStoreError)
    assert "\n" not in str(error.value) and "SELECT" not in str(error.value)


def test_a_sqlite_store_opens_read_only(tmp_path):
    path = str(tmp_path / "metadata.db")
    build_store(queries.open_store(path))
    store = queries.open_read_only(path)
    assert [context.name for context in queries.run_contexts(store)] == ["run-1", "run-2", "run-3"]


# --- runs and executions ----------------------------------------------------------------


def test_runs_oldest_first_and_the_latest(fake_store):
    store, _ = fake_store
    assert [context.name for context in queries.run_contexts(store)] == ["run-1", "run-2", "run-3"]
    assert queries.latest_run(store).name == "run-3"
    assert queries.latest_run(in_memory_store()) is None


def test_execution_rows_and_component_times_of_a_run(fake_store):
    store, _ = fake_store
    (_, run2, _) = queries.run_contexts(store)
    rows = queries.execution_rows(store, run2.id)
    assert [(row.component, row.state) for row in rows] == [
        ("ImageExampleGen", "CACHED"), ("Trainer", "CACHED"), ("Evaluator", "COMPLETE"),
        ("Pusher", "COMPLETE"),
    ]
    assert all(row.end_ms >= row.start_ms > 0 and row.seconds >= 0 for row in rows)
    assert queries.component_times(store, run2.id) == [
        (row.component, row.state, row.seconds) for row in rows
    ]


def test_node_ids_fall_back_to_the_legacy_component_id_property():
    store = in_memory_store()
    execution_type = mlmd.ExecutionType(name="Legacy")
    execution_type.properties["component_id"] = mlmd.STRING
    type_id = store.put_execution_type(execution_type)
    execution = mlmd.Execution(type_id=type_id, last_known_state=State.COMPLETE)
    execution.properties["component_id"].string_value = "Trainer"
    (execution_id,) = store.put_executions([execution])
    assert queries.execution_node_ids(store) == {execution_id: "Trainer"}


def test_run_of_each_execution(fake_store):
    store, ids = fake_store
    run_of = queries.run_of_executions(store)
    assert run_of[ids["trainer"]] == "run-1" and run_of[ids["cached_trainer"]] == "run-2"
    assert sorted(set(run_of.values())) == ["run-1", "run-2", "run-3"]


# --- artifacts ----------------------------------------------------------------------------


def test_run_artifacts_have_type_names_and_producers(fake_store):
    store, ids = fake_store
    run1 = queries.run_contexts(store)[0]
    by_id = {item.artifact.id: item for item in queries.run_artifacts(store, run1.id)}
    assert (by_id[ids["model"]].type_name, by_id[ids["model"]].producer) == ("Model", "Trainer")
    assert (by_id[ids["pushed"]].type_name, by_id[ids["pushed"]].producer) == (
        "PushedModel", "Pusher"
    )
    assert queries.artifact_producers(store, [ids["schema"]]) == {ids["schema"]: "ImportSchemaGen"}


def test_artifacts_of_a_type_oldest_first(fake_store):
    store, ids = fake_store
    assert [artifact.id for artifact in queries.artifacts_of_type(store, "PushedModel")] == [
        ids["pushed"], ids["not_pushed"]
    ]
    assert queries.artifacts_of_type(store, "Nope") == []
    assert sorted(queries.artifact_type_names(store).values()) == [
        "Examples", "Model", "ModelBlessing", "PushedModel", "Schema"
    ]


def test_newest_pushed_model_else_the_newest_model():
    store = in_memory_store()
    build = StoreBuilder(store)
    assert queries.newest_pushed_model(store) is None
    build.artifact("PushedModel", "/p/1", pushed=0)
    build.artifact("Model", "/m/1")
    newest_model = build.artifact("Model", "/m/2")
    assert queries.newest_pushed_model(store).id == newest_model.id
    pushed = build.artifact("PushedModel", "/p/2", pushed=1)
    assert queries.newest_pushed_model(store).id == pushed.id


def test_values_and_properties_are_decoded():
    value = mlmd.Value()
    value.struct_value.fields["__value__"].string_value = '{"eval": 1.0}'
    assert queries.value_of(value) == {"eval": 1.0}
    assert queries.value_of(mlmd.Value(int_value=3)) == 3
    assert queries.value_of(mlmd.Value()) is None
    artifact = mlmd.Artifact()
    artifact.custom_properties["b"].string_value = "x"
    artifact.custom_properties["a"].double_value = 0.5
    assert list(queries.properties_of(artifact).items()) == [("a", 0.5), ("b", "x")]
    assert queries.values_of(artifact.properties) == {}


# --- lineage ------------------------------------------------------------------------------


def test_producer_is_the_oldest_execution_that_was_not_a_cache_hit():
    # (execution id, state, create time)
    assert queries.pick_producer([(9, "CACHED", 900), (3, "COMPLETE", 300)]) == (3, [9])
    assert queries.pick_producer([(4, "COMPLETE", 400)]) == (4, [])
    assert queries.pick_producer([(8, "CACHED", 800), (7, "CACHED", 700)]) == (7, [8])


def test_walk_upstream_finds_producers_inputs_and_cache_hits(fake_store):
    store, ids = fake_store
    graph = queries.walk_upstream(store, ids["pushed"])
    assert graph["producers"][ids["model"]] == ids["trainer"]
    assert graph["cached_in"][ids["model"]] == [ids["cached_trainer"]]
    assert graph["producers"][ids["examples"]] == ids["example_gen"]
    assert graph["inputs"][ids["trainer"]] == [
        ("examples", ids["examples"]), ("schema", ids["schema"])
    ]
    assert {ids["examples"], ids["schema"], ids["model"], ids["pushed"]} <= set(graph["artifacts"])
    assert graph["inputs"][ids["example_gen"]] == []
    with pytest.raises(queries.MetadataError, match="no artifact with id 999"):
        queries.walk_upstream(store, 999)
