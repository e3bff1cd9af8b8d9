"""Time to find every pair of 256-bit perceptual hashes within a distance, at a given count.

ImageExampleGen links near-duplicates in one place (components/image_example_gen/
near_duplicates.py). This times its matrix-product search against scikit-learn's brute-force
radius search (what it used before) on random hashes with a planted copy for every tenth one,
and checks that both find the same pairs.

    .venv/bin/python -m bench.near_duplicate_speed --photos 2436 24360
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from components.image_example_gen import near_duplicates
from components.image_example_gen.near_duplicates import Fingerprint

BITS = 256


def random_prints(count: int, max_distance: int, seed: int = 0) -> list[Fingerprint]:
    rng = np.random.default_rng(seed)
    packed = rng.integers(0, 256, size=(count, BITS // 8), dtype=np.uint8)
    for row in range(1, count, 10):  # a copy within the distance of its neighbour
        bits = np.unpackbits(packed[row - 1])
        bits[rng.choice(BITS, max_distance // 2, replace=False)] ^= 1
        packed[row] = np.packbits(bits)
    return [Fingerprint(f"a/{index}.jpg", "a", 0, str(index), row.tobytes().hex())
            for index, row in enumerate(packed)]


def sklearn_pairs(prints: list[Fingerprint], max_distance: int) -> set[tuple[int, int]]:
    from sklearn.neighbors import NearestNeighbors

    bits = np.stack([np.unpackbits(np.frombuffer(bytes.fromhex(p.phash), np.uint8))
                     for p in prints])
    search = NearestNeighbors(radius=(max_distance + 0.5) / BITS, metric="hamming",
                              algorithm="brute").fit(bits)
    graph = search.radius_neighbors_graph(bits, mode="connectivity").tocoo()
    return set(zip(graph.row.tolist(), graph.col.tolist(), strict=True))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, nargs="+", default=[2436, 24360])
    parser.add_argument("--max-distance", type=int, default=64)
    args = parser.parse_args(argv)
    print("| hashes | matrix product s | scikit-learn radius search s | ratio | same pairs |")
    print("|---|---|---|---|---|")
    for count in args.photos:
        prints = random_prints(count, args.max_distance)
        started = time.perf_counter()
        rows, columns = near_duplicates._near_pairs(prints, args.max_distance)
        ours = time.perf_counter() - started
        started = time.perf_counter()
        theirs = sklearn_pairs(prints, args.max_distance)
        reference = time.perf_counter() - started
        same = set(zip(rows.tolist(), columns.tolist(), strict=True)) == theirs
        print(f"| {count:,} | {ours:.2f} | {reference:.1f} | {reference / ours:.0f}x | {same} |",
              flush=True)


if __name__ == "__main__":
    main()
