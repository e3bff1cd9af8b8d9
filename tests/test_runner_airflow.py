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
        "TFX_POETS_EPOCHS": "3",
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
