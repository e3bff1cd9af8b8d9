"""Each Beam step's time on DirectRunner and on Beam's portable runner (issue 16).

    .venv/bin/python -m bench.beam_runners --out /tmp/bench16 --per-class 60 \\
        --data-dir ../shared/assets/flower_photos \\
        --model-handle ../shared/assets/mobilenet_v1_100_224_feature_vector

copies the first --per-class photos of each class (sorted by name; 0 takes them all) into
OUT/photos, runs `runner_local.py --fine-tune-epochs 0` once per --runner on its own pipeline
root, and prints a Markdown table of the Beam steps' times (ML Metadata's execution start and
end, as the run summary prints them) with the difference to the first runner.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import time

from bench import common

REPO = pathlib.Path(common.REPO_ROOT)
BEAM_STEPS = ("ImageExampleGen", "StatisticsGen", "Transform", "Evaluator", "TestEvaluator")


def subset(data_dir: pathlib.Path, target: pathlib.Path, per_class: int) -> int:
    if target.exists():
        shutil.rmtree(target)
    count = 0
    for class_dir in sorted(path for path in data_dir.iterdir() if path.is_dir()):
        photos = sorted(path for path in class_dir.iterdir() if path.is_file())
        (target / class_dir.name).mkdir(parents=True)
        for photo in photos[:per_class] if per_class else photos:
            shutil.copy2(photo, target / class_dir.name / photo.name)
            count += 1
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for the photos and pipeline roots")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--model-handle", required=True)
    parser.add_argument("--per-class", type=int, default=60, help="0: every photo")
    parser.add_argument("--runner", action="append", default=None,
                        help="--beam-runner value, repeatable (default DirectRunner, "
                        "portable-local)")
    parser.add_argument("--beam-arg", action="append", default=[],
                        help="extra --beam-arg for every runner but DirectRunner")
    args = parser.parse_args()
    runners = args.runner or ["DirectRunner", "portable-local"]
    out = pathlib.Path(args.out).resolve()
    photos = out / "photos"
    count = subset(pathlib.Path(args.data_dir), photos, args.per_class)
    print(f"{count} photos in {photos}", flush=True)
    from pipeline import metadata_queries

    times: dict[str, dict[str, float]] = {}
    walls: dict[str, float] = {}
    for runner in runners:
        root = out / runner
        shutil.rmtree(root, ignore_errors=True)
        command = [
            sys.executable, "runner_local.py", f"--data-dir={photos}",
            f"--model-handle={os.path.abspath(args.model_handle)}", "--fine-tune-epochs=0",
            f"--pipeline-root={root}", f"--beam-runner={runner}",
            *([f"--beam-arg={arg}" for arg in args.beam_arg] if runner != "DirectRunner" else []),
        ]
        print("$ " + " ".join(command), flush=True)
        started = time.time()
        completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        walls[runner] = time.time() - started
        if completed.returncode != 0:
            print(completed.stderr[-3000:], file=sys.stderr)
            return 1
        store = metadata_queries.open_store(str(root / "metadata.db"), read_only=True)
        (run,) = store.get_contexts_by_type("pipeline_run")
        times[runner] = {node: seconds for node, _, seconds in
                         metadata_queries.component_times(store, run.id)}
    base = runners[0]
    print("\n| step | " + " | ".join(runners) + " |")
    print("|---|" + "---|" * len(runners))
    for step in (*BEAM_STEPS, "all Beam steps", "whole run (wall)"):
        if step == "all Beam steps":
            row = {runner: sum(times[runner][s] for s in BEAM_STEPS) for runner in runners}
        elif step == "whole run (wall)":
            row = walls
        else:
            row = {runner: times[runner][step] for runner in runners}
        cells = [f"{row[base]:.1f} s"] + [
            f"{row[runner]:.1f} s ({row[runner] - row[base]:+.1f})" for runner in runners[1:]]
        print(f"| {step} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
