"""Compiles the tfx-poets pipeline for Kubeflow Pipelines V2 (Vertex AI Pipelines): the same
`create_pipeline(config)` as runner_local.py, written as a pipeline JSON to submit.
`python runner_kubeflow.py -h` lists the flags; see docs/orchestrators.md."""

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before TensorFlow: hub and TFT need tf_keras

from pipeline import cli  # noqa: E402


def add_flags(group) -> None:
    group.add_argument("--container-image", required=True,
                       help="image with this project installed (pip install -e . in /tfx-poets), "
                       "in which every component runs")
    group.add_argument("--output-file", default="tfx_poets_pipeline.json",
                       help="where the compiled pipeline JSON is written")


def compile_pipeline(config, args) -> None:
    from tfx import v1 as tfx

    from pipeline.pipeline import create_pipeline

    output_dir, output_name = os.path.split(os.path.abspath(args.output_file))
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=args.container_image
        ),
        output_dir=output_dir,
        output_filename=output_name,
    )
    runner.run(create_pipeline(config), write_out=True)
    print(f"runner_kubeflow.py: wrote {args.output_file}")


if __name__ == "__main__":
    sys.exit(
        cli.main(sys.argv[1:], compile_pipeline, prog="runner_kubeflow.py",
                 add_runner_flags=add_flags, local=False)
    )
