"""pipeline.results.latest_run_results on a small ML Metadata store built by hand (no TFMA
output, so no ModelEvaluation artifact)."""

import types

from ml_metadata.proto import metadata_store_pb2 as mlmd

from pipeline import metadata_queries, results
from pipeline.metadata_queries_test import StoreBuilder, build_store


def test_latest_run_results_of_a_small_store(tmp_path):
    path = str(tmp_path / "metadata.db")
    store = metadata_queries.open_store(path)
    build_store(store)
    build = StoreBuilder(store)
    build.nodes = {context.name.split(".", 1)[1]: context
                   for context in store.get_contexts_by_type("node")}
    build.type_ids["HtmlReport"] = store.put_artifact_type(mlmd.ArtifactType(name="HtmlReport"))
    run = build.run("run-4")
    build.execute(run, "ImageExampleGen",
                  outputs=[("examples", build.artifact("Examples", "/examples/9"))])
    pushed = build.artifact("PushedModel", "/pushed/9", pushed=1, pushed_destination="/serving/9")
    build.execute(run, "Pusher", outputs=[("pushed_model", pushed)])
    report = build.artifact("HtmlReport", "/report/9", report_html="/report/9/report.html")
    build.execute(run, results.RUN_REPORT_ID, outputs=[("report", report)])

    found = results.latest_run_results(types.SimpleNamespace(metadata_path=path))

    assert found.run_id == "run-4"
    assert found.pushed_model_dir == "/serving/9"
    assert found.conversion_report == "/examples/9/conversion_report.json"
    assert found.run_report == "/report/9/report.html"
    assert [(node, state) for node, state, _ in found.component_times] == [
        ("ImageExampleGen", "COMPLETE"), ("Pusher", "COMPLETE"), (results.RUN_REPORT_ID, "COMPLETE")
    ]
