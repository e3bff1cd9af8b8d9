import os

import numpy as np

from models.bottleneck_cache import SHARD_PREFIX, BottleneckCache, module_key, photo_key


def test_features_persist_across_instances_one_shard_per_flush(tmp_path):
    cache = BottleneckCache(str(tmp_path), "module-a")
    assert len(cache) == 0 and cache.flush() is None  # nothing new: no empty shard
    cache.put(photo_key(b"one"), np.arange(4, dtype=np.float32))
    cache.put(photo_key(b"two"), np.ones(4, np.float32))
    first = cache.flush()
    cache.put(photo_key(b"three"), np.zeros(4, np.float32))
    second = cache.flush()
    assert first != second
    shards = sorted(os.listdir(tmp_path / "module-a"))
    assert len(shards) == 2 and all(name.startswith(SHARD_PREFIX) for name in shards)

    reopened = BottleneckCache(str(tmp_path), "module-a")
    assert len(reopened) == 3
    np.testing.assert_array_equal(reopened.get(photo_key(b"one")), np.arange(4))
    assert photo_key(b"four") not in reopened
    # Another module's features are kept apart.
    assert len(BottleneckCache(str(tmp_path), "module-b")) == 0


def test_an_unreadable_or_half_written_shard_is_ignored(tmp_path):
    cache = BottleneckCache(str(tmp_path), "m")
    cache.put("k", np.ones(2, np.float32))
    cache.flush()
    (tmp_path / "m" / f"{SHARD_PREFIX}broken.npz").write_bytes(b"not a zip")
    (tmp_path / "m" / f".tmp-{SHARD_PREFIX}x.npz").write_bytes(b"half")
    reopened = BottleneckCache(str(tmp_path), "m")
    assert len(reopened) == 1 and "k" in reopened


def test_without_a_directory_nothing_is_written(tmp_path):
    cache = BottleneckCache("", "m")
    cache.put("k", np.ones(2, np.float32))
    assert cache.flush() is None and "k" in cache


def test_module_key_follows_the_module_files_not_its_path(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        (folder / "variables").mkdir(parents=True)
        (folder / "saved_model.pb").write_bytes(b"graph")
        (folder / "variables" / "variables.index").write_bytes(b"index")
    assert module_key(str(first)) == module_key(str(second))
    (second / "variables" / "variables.index").write_bytes(b"other weights")
    assert module_key(str(first)) != module_key(str(second))
    assert module_key("https://tfhub.dev/x/1") != module_key("https://tfhub.dev/x/2")


def test_features_are_stored_as_float16_and_read_back_as_float32(tmp_path):
    features = np.random.default_rng(0).uniform(0, 6, 1024).astype(np.float32)
    cache = BottleneckCache(str(tmp_path), "m")
    cache.put("k/squash224", features)
    # The run that computed them sees what its rerun will load from the shard.
    in_memory = cache.get("k/squash224")
    path = cache.flush()
    with np.load(path) as shard:
        assert shard["features"].dtype == np.float16 and shard["keys"].dtype.kind == "S"
    reloaded = BottleneckCache(str(tmp_path), "m").get("k/squash224")
    assert reloaded.dtype == np.float32
    np.testing.assert_array_equal(reloaded, in_memory)
    np.testing.assert_allclose(reloaded, features, rtol=1e-3)


def test_a_float32_shard_of_an_earlier_version_still_loads(tmp_path):
    (tmp_path / "m").mkdir()
    np.savez(tmp_path / "m" / f"{SHARD_PREFIX}old.npz", keys=np.array(["a", "b/mirror"]),
             features=np.ones((2, 3), np.float32))
    cache = BottleneckCache(str(tmp_path), "m")
    assert len(cache) == 2
    np.testing.assert_array_equal(cache.get("b/mirror"), np.ones(3))


def test_features_beyond_float16s_range_stay_float32(tmp_path):
    cache = BottleneckCache(str(tmp_path), "m")
    large = np.array([1e5, -2.0, 0.5], np.float32)
    cache.put("large", large)
    cache.put("small", np.ones(3, np.float32))
    np.testing.assert_array_equal(cache.get("large"), large)
    cache.flush()
    np.testing.assert_array_equal(BottleneckCache(str(tmp_path), "m").get("large"), large)
