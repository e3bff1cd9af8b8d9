"""Runs the tfx-poets pipeline on this machine: LocalDagRunner, Beam's DirectRunner, and an
ML Metadata SQLite store under --pipeline-root. `python runner_local.py -h` lists the flags."""

import dataclasses
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before TensorFlow: hub and TFT need tf_keras
# oneDNN kernels: TF 2.16 turns them on by default only on CPUs with AVX-512; on these 2-core
# machines they halve a fine-tune step and cut a forward pass by 30 % (BENCHMARKS.md, issue 3).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def cap_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each busy thread a heap arena of its own, and freed activations then sit in
    a dozen arenas; two kept the Trainer 740 MB lower with the other issue-15 changes
    (BENCHMARKS.md). Before TensorFlow starts its threads; a no-op off glibc."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # -8: M_ARENA_MAX in malloc.h
    except (OSError, AttributeError):
        pass


cap_malloc_arenas()

from pipeline import cli  # noqa: E402


def run(config, args=None) -> None:
    # Not `tfx.v1`, which also imports TFX's Google Cloud extensions (see pipeline.py).
    from tfx.orchestration import metadata
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from pipeline import beam_services, results, run_lock
    from pipeline.pipeline import create_pipeline

    with run_lock.hold(config.pipeline_root), \
            beam_services.beam_services(config.beam_pipeline_args,
                                        beam_services.log_dir(config.pipeline_root)) as beam_args:
        # --beam-runner portable-local: the services it started, for this run only.
        config = dataclasses.replace(config, beam_pipeline_args=tuple(beam_args))
        connection = metadata.sqlite_metadata_connection_config(config.metadata_path)
        LocalDagRunner().run(create_pipeline(config, connection))
        print(results.summarize(config))


if __name__ == "__main__":
    sys.exit(cli.main(sys.argv[1:], run_pipeline=run, prog="runner_local.py"))
