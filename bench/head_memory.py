"""Peak memory of the head's cross-validation, on random features of a given size.

models/linear_head.py fits 4 C x 5 folds of scikit-learn's lbfgs on every view of the train
photos. This runs that cross-validation on random float32 features ([photos, dimension] per
view, 5 classes) and prints the RSS before it, its peak (sampled every 10 ms), and after it,
in MB (10^6 bytes). --max-iterations caps lbfgs: memory does not depend on it, time does.

    .venv/bin/python -m bench.head_memory --photos 19531 --max-iterations 5
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np

from bench import common
from models import linear_head


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=19531, help="train photos (10x: 19531)")
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--dimension", type=int, default=1024)
    parser.add_argument("--max-iterations", type=int, default=linear_head.MAX_ITERATIONS)
    args = parser.parse_args(argv)
    linear_head.MAX_ITERATIONS = args.max_iterations
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, args.photos)
    views = [rng.random((args.photos, args.dimension), dtype=np.float32)
             for _ in range(args.views)]
    before = common.rss_bytes()
    started = time.perf_counter()
    with warnings.catch_warnings(), common.TreeRssSampler(os.getpid(), 0.01) as sampler:
        warnings.simplefilter("ignore")  # lbfgs does not converge in a few iterations
        linear_head.cross_validate(views, labels, 5)
    seconds = time.perf_counter() - started
    print(f"{args.photos:,} photos x {args.views} views x {args.dimension}: RSS before "
          f"{before / 1e6:,.0f} MB, peak {sampler.peak_bytes / 1e6:,.0f} MB, after "
          f"{common.rss_bytes() / 1e6:,.0f} MB, {seconds:.0f} s "
          f"({len(linear_head.C_GRID)} C x {linear_head.CV_FOLDS} folds, "
          f"max {args.max_iterations} iterations)")


if __name__ == "__main__":
    main()
