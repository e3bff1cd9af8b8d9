"""bench/feature_precision.py reads the cache's shards in the dtype they were saved in."""

import numpy as np

from bench import feature_precision
from models.bottleneck_cache import SHARD_PREFIX, BottleneckCache


def test_shards_are_read_as_saved_float32_before_float16(tmp_path):
    old = np.linspace(0, 6, 8, dtype=np.float32).reshape(2, 4) + np.float32(1e-4)
    np.savez(tmp_path / f"{SHARD_PREFIX}old.npz", keys=np.array(["a", "a/mirror"]), features=old)
    cache = BottleneckCache(str(tmp_path.parent), tmp_path.name)
    cache.put("b", np.ones(4, np.float32))
    cache.flush()  # a float16 shard with ASCII keys
    stored = feature_precision.stored_features(str(tmp_path))
    assert sorted(stored) == ["a", "a/mirror", "b"]
    assert stored["a"].dtype == np.float32 and stored["b"].dtype == np.float16
    np.testing.assert_array_equal(stored["a/mirror"], old[1])  # not rounded, unlike the cache
    assert not np.array_equal(cache.get("a/mirror"), old[1])
