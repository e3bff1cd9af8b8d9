"""The Trainer's peak memory, phase by phase: its run_fn on a finished run's Transform output.

    .venv/bin/python -m bench.trainer_memory \\
        --transformed ROOT/artifacts/Transform/transformed_examples/N \\
        --transform-graph ROOT/artifacts/Transform/transform_graph/M \\
        --model-handle ../shared/assets/mobilenet_v1_100_224_feature_vector \\
        --classes daisy dandelion roses sunflowers tulips --out /tmp/trainer_memory \\
        [--feature-batch 16] [--malloc-arenas 2]

The runner's defaults otherwise (TrainingConfig), with an empty feature cache under --out, so
the feature pass runs. RSS is sampled every 0.5 s and attributed to the Trainer's last log line
before it: one line per phase with its peak in MB. --malloc-arenas N caps glibc's arenas as
runner_local.py does (0: glibc's default, eight per core).
"""

from __future__ import annotations

import argparse
import logging
import os
import time

from bench import common

common.tensorflow_defaults(log_level="3", onednn=True)


class PhasePeaks(logging.Handler):
    """{phase: peak RSS in MB (10^6 bytes)}, a phase being the last log message seen."""

    def __init__(self):
        super().__init__()
        self.phase, self.peaks = "start", {}
        common.PeriodicThread(0.5, self._sample).start()

    def emit(self, record):
        self.phase = record.getMessage().splitlines()[0][:70]

    def _sample(self):
        phase = self.phase
        self.peaks[phase] = max(self.peaks.get(phase, 0.0), common.rss_bytes() / 1e6)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transformed", required=True, help="a Transform transformed_examples "
                        "artifact folder (Split-train/, Split-eval/)")
    parser.add_argument("--transform-graph", required=True)
    parser.add_argument("--model-handle", required=True)
    parser.add_argument("--classes", nargs="+", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--feature-batch", type=int, default=0, help="0: the Trainer's own")
    parser.add_argument("--malloc-arenas", type=int, default=0)
    args = parser.parse_args(argv)
    if args.malloc_arenas:
        import runner_local

        runner_local.cap_malloc_arenas(args.malloc_arenas)

    from tfx.components.trainer.fn_args_utils import FnArgs

    from models import feature_pass, trainer_module
    from models.training_config import TrainingConfig

    if args.feature_batch:
        feature_pass.FEATURE_BATCH = args.feature_batch
    peaks = PhasePeaks()
    logging.getLogger().addHandler(peaks)
    logging.getLogger().setLevel(logging.INFO)
    settings = TrainingConfig(
        model_handle=args.model_handle, class_names=tuple(args.classes),
        backbone_dir=os.path.join(args.out, "backbones"),
        bottleneck_dir=os.path.join(args.out, "bottlenecks"),
    )
    started = time.time()
    trainer_module.run_fn(FnArgs(
        train_files=[os.path.join(args.transformed, "Split-train", "*")],
        eval_files=[os.path.join(args.transformed, "Split-eval", "*")],
        transform_output=args.transform_graph,
        serving_model_dir=os.path.join(args.out, "serving"),
        model_run_dir=os.path.join(args.out, "logs"),
        custom_config=settings.to_custom_config(),
    ))
    print(f"run_fn {time.time() - started:.0f} s, feature batch {feature_pass.FEATURE_BATCH}, "
          f"malloc arenas {args.malloc_arenas or 'default'}")
    print("| peak RSS | phase (the Trainer's last log line) |\n|---|---|")
    for phase, peak in peaks.peaks.items():
        print(f"| {peak:,.0f} MB | {phase} |")


if __name__ == "__main__":
    main()
