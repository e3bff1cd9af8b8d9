"""runner_kubeflow.py compiles the same pipeline into a Kubeflow Pipelines V2 JSON."""

import json
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
FLOWERS = "daisy,dandelion,roses,sunflowers,tulips"


def _parameter(task, name):
    return task["inputs"]["parameters"][name]["runtimeValue"]["constantValue"]["stringValue"]


def test_compiles_every_component_in_order_with_its_parameters(tmp_path):
    output = tmp_path / "pipeline.json"
    # The docs' command (docs/orchestrators.md), with a local output file.
    completed = subprocess.run(
        [sys.executable, "runner_kubeflow.py",
         "--data-dir", "gs://my-bucket/flower_photos", "--class-names", FLOWERS,
         "--pipeline-root", "gs://my-bucket/tfx-poets", "--architecture", "mobilenet_1.0_224",
         "--container-image", "gcr.io/my-project/tfx-poets:latest",
         "--beam-runner", "DataflowRunner", "--beam-arg=--project=my-project",
         "--beam-arg=--region=europe-west1", "--head-c", "3", "--fine-tune-epochs", "2",
         "--output-file", str(output)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    spec = json.loads(output.read_text())
    assert spec["runtimeConfig"]["gcsOutputDirectory"] == "gs://my-bucket/tfx-poets/artifacts"
    tasks = spec["pipelineSpec"]["root"]["dag"]["tasks"]
    components = {name for name in tasks if "resolver" not in name}
    assert components == {
        "ImageExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "Transform",
        "FineTuner", "Trainer", "Evaluator", "TestEvaluator", "Pusher", "RunReport",
    }
    depends = {name: set(task.get("dependentTasks", [])) for name, task in tasks.items()}
    # StatisticsGen reads the schema too: TFDV then treats the photos as bytes.
    assert depends["StatisticsGen"] == {"ImageExampleGen", "ImportSchemaGen"}
    assert depends["Transform"] == {"ImageExampleGen", "ImportSchemaGen"}
    assert depends["FineTuner"] == {"Transform", "ImportSchemaGen"}
    assert depends["Trainer"] == {"Transform", "ImportSchemaGen", "FineTuner"}
    assert {"Trainer", "ImageExampleGen"} <= depends["Evaluator"]
    assert depends["Pusher"] == {"Trainer", "Evaluator"}

    assert _parameter(tasks["ImageExampleGen"], "input_base") == "gs://my-bucket/flower_photos"
    trainer_config = json.loads(_parameter(tasks["Trainer"], "custom_config"))
    assert trainer_config["head_c"] == 3
    # The FineTuner's warm-up head keeps the default head settings.
    fine_tuner_config = json.loads(_parameter(tasks["FineTuner"], "custom_config"))
    assert fine_tuner_config["head_c"] == 0 and fine_tuner_config["fine_tune_epochs"] == 2
    assert trainer_config["class_names"] == FLOWERS.split(",")
    assert trainer_config["model_handle"].endswith("mobilenet_v1_100_224/feature_vector/5")
    executors = spec["pipelineSpec"]["deploymentSpec"]["executors"]
    for name in ("ImageExampleGen", "StatisticsGen", "Transform", "Evaluator"):
        container = executors[f"{name}_executor"]["container"]
        assert container["image"] == "gcr.io/my-project/tfx-poets:latest"
        assert "--runner=DataflowRunner" in container["args"]
        assert "--region=europe-west1" in container["args"]


def test_missing_container_image_is_a_usage_error():
    completed = subprocess.run(
        [sys.executable, "runner_kubeflow.py", "--data-dir", "gs://b/p", "--class-names", "a,b"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 2
    assert "--container-image" in completed.stderr and "Traceback" not in completed.stderr
