"""runner_airflow.py is a DAG file Airflow loads: one task per component, in pipeline order.

Airflow's pins cannot share .venv, so this runs in .venv-airflow (`bash scripts/setup.sh
--with-airflow`, which .ci/run and the README's test command do)."""

import json
import os
import pathlib
import subprocess

import pytest

from tests.support import make_image_folder

REPO = pathlib.Path(__file__).resolve().parent.parent
AIRFLOW_PYTHON = REPO / ".venv-airflow" / "bin" / "python"

# Loads the DAG file the way Airflow's scheduler does, then reports the DAG's tasks.
LOAD_WITH_DAGBAG = """
import json
from airflow.models import DagBag
bag = DagBag(dag_folder="runner_airflow.py", include_examples=False)
dag = bag.dags.get("tfx-poets")  # get_dag() would need the Airflow database
print(json.dumps({
    "import_errors": {path: str(error) for path, error in bag.import_errors.items()},
    "tasks": [[t.task_id, sorted(t.upstream_task_ids)] for t in dag.topological_sort()]
             if dag else [],
    "schedule": str(dag.schedule_interval) if dag else "",
}))
"""


@pytest.fixture(scope="module")
def airflow_python():
    if not AIRFLOW_PYTHON.exists():
        pytest.fail(f"{AIRFLOW_PYTHON} is missing: run `bash scripts/setup.sh --with-airflow`",
                    pytrace=False)
    return str(AIRFLOW_PYTHON)


def test_airflow_loads_the_dag_with_every_component_in_order(airflow_python, tmp_path):
    photos = make_image_folder(tmp_path / "photos", {"cats": 2, "dogs": 2})
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "saved_model.pb").write_bytes(b"")  # the DAG is built, not run
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        # Importing TFX and TensorFlow takes ~30 s on 2 cores, Airflow's default limit.
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "600",
        "TFX_POETS_DATA_DIR": str(photos),
        "TFX_POETS_MODEL_HANDLE": str(hub),
        "TFX_POETS_PIPELINE_ROOT": str(tmp_path / "root"),
        # Fine-tuning on puts the FineTuner in the DAG (it is off by default).
        "TFX_POETS_FINE_TUNE_EPOCHS": "1",
    }
    completed = subprocess.run(
        [airflow_python, "-c", LOAD_WITH_DAGBAG], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    loaded = json.loads(completed.stdout.strip().splitlines()[-1])
    assert loaded["import_errors"] == {}
    assert loaded["schedule"] == "None"
    order = [task for task, _ in loaded["tasks"]]
    upstream = dict(loaded["tasks"])
    assert set(order) == {
        "ImageExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "Transform",
        "FineTuner", "Trainer", "latest_blessed_model_resolver", "Evaluator", "TestEvaluator",
        "Pusher", "RunReport",
    }
    for before, after in [("ImageExampleGen", "StatisticsGen"), ("Transform", "FineTuner"),
                          ("FineTuner", "Trainer"),
                          ("Trainer", "Evaluator"), ("Evaluator", "Pusher")]:
        assert order.index(before) < order.index(after)
    assert upstream["FineTuner"] == ["ImportSchemaGen", "Transform"]
    assert upstream["Trainer"] == ["FineTuner", "ImportSchemaGen", "Transform"]
    assert upstream["Pusher"] == ["Evaluator", "Trainer"]


def test_the_docs_dry_run_prints_the_tasks_in_order(airflow_python, tmp_path):
    photos = make_image_folder(tmp_path / "photos", {"cats": 2, "dogs": 2})
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "saved_model.pb").write_bytes(b"")
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"),
           "TFX_POETS_DATA_DIR": str(photos), "TFX_POETS_MODEL_HANDLE": str(hub),
           "TFX_POETS_PIPELINE_ROOT": str(tmp_path / "root")}
    # docs/orchestrators.md: `.venv-airflow/bin/python runner_airflow.py`
    completed = subprocess.run([airflow_python, "runner_airflow.py"], cwd=REPO, env=env,
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.splitlines()
    task_lines = lines[lines.index("DAG tfx-poets:") + 1:]
    tasks = [line.split()[0] for line in task_lines if line.startswith("  ")]
    assert tasks.index("Transform") < tasks.index("Trainer") < tasks.index("Pusher")
    assert any(line.split()[0] == "Pusher" and "Evaluator, Trainer" in line
               for line in task_lines if line.startswith("  "))


AIRFLOW_CLASSES = {"circle_red": 12, "square_green": 12, "triangle_blue": 12}
RUN_DATE = "2026-12-01"


@pytest.fixture(scope="module")
def airflow_run(airflow_python, tmp_path_factory):
    """The DAG executed by the locked Airflow as docs/orchestrators.md says: a fresh
    AIRFLOW_HOME, runner_airflow.py linked into its dags folder, `airflow db migrate`, then
    `airflow dags test tfx-poets DATE` (every task, in order, in one process, recorded in
    Airflow's database like a scheduled run)."""
    from tests.support import make_random_hub_mobilenet

    root = tmp_path_factory.mktemp("airflow_run")
    photos = make_image_folder(root / "photos", AIRFLOW_CLASSES, size=(64, 48))
    hub = make_random_hub_mobilenet(root / "hub", alpha=0.25, resolution=128)
    home = root / "airflow"
    (home / "dags").mkdir(parents=True)
    (home / "dags" / "tfx_poets.py").symlink_to(REPO / "runner_airflow.py")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "600",
        "TFX_POETS_DATA_DIR": str(photos),
        "TFX_POETS_MODEL_HANDLE": str(hub),
        "TFX_POETS_IMAGE_SIZE": "128",
        "TFX_POETS_PIPELINE_ROOT": str(root / "out"),
        "TFX_POETS_TESTING_PERCENTAGE": "20",
        "TFX_POETS_VALIDATION_PERCENTAGE": "20",
        # One epoch keeps the FineTuner in the DAG: it and the Trainer both output `model`.
        "TFX_POETS_FINE_TUNE_EPOCHS": "1",
        "TFX_POETS_MIN_ACCURACY": "0",
    }
    airflow = str(pathlib.Path(airflow_python).parent / "airflow")
    migrate = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True,
                             text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-3000:]
    completed = subprocess.run([airflow, "dags", "test", "tfx-poets", RUN_DATE], env=env,
                               capture_output=True, text=True, timeout=1200)
    return root, completed


def test_airflow_executes_every_task_of_the_dag_successfully(airflow_run):
    import sqlite3

    root, completed = airflow_run
    output = completed.stdout[-3000:] + completed.stderr[-6000:]
    assert completed.returncode == 0, output
    # Airflow's own record of the run, not its log.
    with sqlite3.connect(root / "airflow" / "airflow.db") as database:
        runs = database.execute(
            "SELECT run_id, state FROM dag_run WHERE dag_id = 'tfx-poets'").fetchall()
        tasks = dict(database.execute(
            "SELECT task_id, state FROM task_instance WHERE dag_id = 'tfx-poets'").fetchall())
    assert len(runs) == 1 and runs[0][1] == "success", (runs, output)
    assert set(tasks) == {
        "ImageExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "Transform",
        "FineTuner", "Trainer", "latest_blessed_model_resolver", "Evaluator", "TestEvaluator",
        "Pusher", "RunReport",
    }
    assert set(tasks.values()) == {"success"}, tasks


def test_airflow_run_pushed_a_model_with_lineage_back_to_the_photos(airflow_run, capsys):
    from pipeline import metadata_queries
    from tools import inspect_metadata

    root, completed = airflow_run
    assert completed.returncode == 0, completed.stderr[-3000:]
    versions = [path for path in (root / "out" / "serving_model").iterdir() if path.is_dir()]
    assert len(versions) == 1 and (versions[0] / "saved_model.pb").exists()
    assert inspect_metadata.main(
        ["lineage", "--json", "--pipeline-root", str(root / "out")]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["artifact"]["type"] == "PushedModel"
    assert document["artifact"]["custom_properties"]["pushed"] == 1
    chain = [component for level in document["chain"] for component in level]
    assert chain[:4] == ["Pusher", "Evaluator", "Trainer", "FineTuner"]
    assert {"Transform", "ImageExampleGen"} <= set(chain)
    assert pathlib.Path(document["input_base"]).resolve() == (root / "photos").resolve()
    # Both Evaluators registered their outputs in the one run, under names of their own.
    store = metadata_queries.open_store(str(root / "out" / "metadata.db"), read_only=True)
    names = sorted(artifact.name for artifact in store.get_artifacts_by_type("ModelEvaluation"))
    assert names == [f"Evaluator:evaluation:manual__{RUN_DATE}T00:00:00+00:00",
                     f"TestEvaluator:evaluation:manual__{RUN_DATE}T00:00:00+00:00"]
