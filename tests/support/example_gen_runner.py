"""runner_local.py with the pipeline cut down to its first step, ImageExampleGen.

`python -m tests.support.example_gen_runner <runner_local flags>` goes through the same command
line, preflight checks, TFX launcher, driver, cache and executor as a user's run, and ends
after the conversion: seconds instead of a training run, for the bad-input corpus test.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from pipeline import cli  # noqa: E402

NODE_ID = "ImageExampleGen"


def run(config, args=None) -> None:
    from tfx.orchestration import metadata
    from tfx.orchestration import pipeline as tfx_pipeline
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from pipeline.pipeline import create_components

    os.makedirs(config.pipeline_root, exist_ok=True)
    LocalDagRunner().run(
        tfx_pipeline.Pipeline(
            pipeline_name=config.pipeline_name,
            pipeline_root=config.artifacts_root,
            components=[create_components(config)[NODE_ID]],
            enable_cache=config.enable_cache,
            metadata_connection_config=metadata.sqlite_metadata_connection_config(
                config.metadata_path
            ),
            beam_pipeline_args=list(config.beam_pipeline_args),
        )
    )


if __name__ == "__main__":
    sys.exit(cli.main(sys.argv[1:], run_pipeline=run, prog="runner_local.py"))
