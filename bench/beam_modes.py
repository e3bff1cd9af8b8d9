"""Times ImageExampleGen's Beam job on a folder under DirectRunner settings, in one process.

    .venv/bin/python -m bench.beam_modes ../shared/assets/flower_photos

Each setting converts the whole folder into a fresh temporary directory; prints seconds per
setting (median of --repeats).
"""

import argparse
import statistics
import tempfile
import time

from bench import common

common.tensorflow_defaults(log_level="3")

from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor  # noqa: E402
from tfx.types import standard_artifacts  # noqa: E402

from components.image_example_gen import executor, scan  # noqa: E402
from pipeline import config as config_lib  # noqa: E402
from pipeline.pipeline import image_example_gen  # noqa: E402

SETTINGS = {
    "in_memory, 1 worker": ["--direct_num_workers=1"],
    "multi_processing, 2 workers": [
        "--direct_running_mode=multi_processing", "--direct_num_workers=2"
    ],
    "multi_threading, 2 workers": [
        "--direct_running_mode=multi_threading", "--direct_num_workers=2"
    ],
}


def convert_once(data_dir, class_names, beam_args) -> float:
    data = config_lib.DataConfig(data_dir, tuple(class_names))
    component = image_example_gen(data, code_fingerprint="")
    with tempfile.TemporaryDirectory() as output_dir:
        examples = standard_artifacts.Examples()
        examples.uri = output_dir
        context = BaseBeamExecutor.Context(beam_pipeline_args=beam_args, tmp_dir=output_dir)
        started = time.perf_counter()
        executor.Executor(context).Do(
            {}, {"examples": [examples]}, dict(component.exec_properties)
        )
        return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    class_names = scan.discover_classes(args.data_dir)
    for name, beam_args in SETTINGS.items():
        seconds = [convert_once(args.data_dir, class_names, beam_args)
                   for _ in range(args.repeats)]
        print(f"{name:30s} median {statistics.median(seconds):6.1f} s  "
              f"(runs: {', '.join(f'{s:.1f}' for s in seconds)})", flush=True)


if __name__ == "__main__":
    main()
