"""Where the pipeline's memory goes, one step at a time, each in a fresh process.

    .venv/bin/python -m bench.memory_probes example-gen --data-dir PHOTOS [--schema SCHEMA]
    .venv/bin/python -m bench.memory_probes allocator --model-handle HUB_MODULE [--batches 6]

example-gen: ImageExampleGen's executor on PHOTOS, then TFX's StatisticsGen executor on what it
  wrote, with and (in a second process) without --schema. Without a schema TFDV counts every
  photo's bytes as a distinct string value (top-k), holding them all.
allocator: fits a trainable hub.KerasLayer MobileNet plus a softmax on random images, twice,
  releasing memory after each fit as `memory.release_memory` does, with oneDNN's default
  allocator (a BFC pool, kept for the life of the process) and with
  TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1 (glibc malloc). The second fit's seconds are the steady state.

Each line gives RSS in MB: before, peak (sampled every 0.1 s) and after; `released` is after
`gc.collect` and `malloc_trim`.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from bench import common


class PeakRss:
    """This process's RSS now and its peak since the last `reset`, sampled from a thread."""

    def __init__(self, interval_s: float = 0.1):
        self.peak = 0
        common.PeriodicThread(interval_s, self._sample, name="peak-rss").start()

    def now(self) -> int:
        return common.rss_bytes() // common.MB

    def reset(self) -> int:
        self.peak = self.now()
        return self.peak

    def _sample(self) -> None:
        self.peak = max(self.peak, self.now())


def release() -> None:
    import ctypes
    import gc

    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)


def _example_gen(data_dir: str, schema: str, work_dir: str) -> dict:
    from tfx.components.statistics_gen import executor as statistics_executor
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
    from tfx.types import standard_artifacts

    from components.image_example_gen import executor, scan
    from pipeline import config as config_lib
    from pipeline.pipeline import image_example_gen

    rss = PeakRss()
    context = BaseBeamExecutor.Context(
        beam_pipeline_args=["--direct_num_workers=1"], tmp_dir=os.path.join(work_dir, "tmp")
    )
    component = image_example_gen(
        config_lib.DataConfig(data_dir, scan.discover_classes(data_dir)), code_fingerprint=""
    )
    examples = standard_artifacts.Examples()
    examples.uri = os.path.join(work_dir, "examples")
    result = {}
    before, started = rss.reset(), time.time()
    executor.Executor(context).Do({}, {"examples": [examples]}, dict(component.exec_properties))
    result["ImageExampleGen"] = [round(time.time() - started), before, rss.peak, rss.now()]
    release()
    inputs = {"examples": [examples]}
    if schema:
        schema_artifact = standard_artifacts.Schema()
        schema_artifact.uri = os.path.dirname(os.path.abspath(schema))
        inputs["schema"] = [schema_artifact]
    statistics = standard_artifacts.ExampleStatistics()
    statistics.uri = os.path.join(work_dir, "statistics")
    before, started = rss.reset(), time.time()
    statistics_executor.Executor(context).Do(
        inputs, {"statistics": [statistics]}, {"exclude_splits": "[]"}
    )
    result["StatisticsGen"] = [round(time.time() - started), before, rss.peak, rss.now()]
    return result


def _allocator(model_handle: str, batches: int) -> dict:
    import numpy as np
    import tensorflow_hub as hub
    import tf_keras

    rss = PeakRss()
    result = {"fits": []}
    for _ in range(2):
        before = rss.reset()
        model = tf_keras.Sequential(
            [hub.KerasLayer(model_handle, trainable=True), tf_keras.layers.Dense(5)]
        )
        model.build([None, 224, 224, 3])
        model.compile(
            tf_keras.optimizers.Adam(1e-4),
            tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        rng = np.random.default_rng(0)
        images = rng.random((32 * batches, 224, 224, 3), dtype=np.float32)
        labels = rng.integers(0, 5, len(images))
        started = time.time()
        model.fit(images, labels, batch_size=32, epochs=1, verbose=0)
        seconds = round(time.time() - started, 1)
        del model, images
        tf_keras.backend.clear_session()
        release()
        result["fits"].append({"s": seconds, "before": before, "peak": rss.peak,
                               "released": rss.now()})
    return result


def _child(args: argparse.Namespace) -> None:
    common.tensorflow_defaults()
    if args.probe == "example-gen":
        with tempfile.TemporaryDirectory() as work_dir:
            print(json.dumps(_example_gen(args.data_dir, args.schema, work_dir)))
    else:
        print(json.dumps(_allocator(args.model_handle, args.batches)))


def _run_child(argv: list[str], env: dict[str, str]) -> dict:
    completed = subprocess.run(
        common.module_command("bench.memory_probes", "--child", *argv),
        env={**os.environ, **env},
        capture_output=True, text=True, check=False,
    )
    if completed.returncode:
        sys.exit(f"memory_probes: child failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    probes = parser.add_subparsers(dest="probe", required=True)
    example_gen = probes.add_parser("example-gen", help="ImageExampleGen and StatisticsGen")
    example_gen.add_argument("--data-dir", required=True, help="one subfolder per class")
    example_gen.add_argument("--schema",
                             default=os.path.join(common.REPO_ROOT, "schemas/flowers/schema.pbtxt"),
                             help="schema.pbtxt for StatisticsGen (default: the flowers one)")
    allocator = probes.add_parser("allocator", help="oneDNN's BFC pool against glibc malloc")
    allocator.add_argument("--model-handle", required=True, help="MobileNet 224 hub module")
    allocator.add_argument("--batches", type=int, default=6, help="batches of 32 per fit")
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    environment = {"TF_ENABLE_ONEDNN_OPTS": "1", "TF_USE_LEGACY_KERAS": "1"}
    if args.probe == "example-gen":
        base = ["example-gen", "--data-dir", args.data_dir]
        for label, schema in (("with schema", args.schema), ("without schema", "")):
            result = _run_child([*base, "--schema", schema], environment)
            for step, (seconds, before, peak, after) in result.items():
                print(f"{step:16s} {label:15s} {seconds:4d} s  RSS before {before:,} "
                      f"peak {peak:,} after {after:,} MB")
    else:
        base = ["allocator", "--model-handle", args.model_handle, "--batches", str(args.batches)]
        for label, extra in (("oneDNN BFC pool", {}),
                             ("system malloc", {"TF_ONEDNN_USE_SYSTEM_ALLOCATOR": "1"})):
            result = _run_child(base, {**environment, **extra})
            for index, fit in enumerate(result["fits"], 1):
                print(f"{label:16s} fit {index}: {fit['s']:5.1f} s  RSS before {fit['before']:,} "
                      f"peak {fit['peak']:,} released {fit['released']:,} MB")


if __name__ == "__main__":
    main()
