"""Tests of the grouping of copies: links, chains, the oldest member's split, conflicts."""

from components.image_example_gen import images, near_duplicates
from components.image_example_gen.near_duplicates import Fingerprint
from tests.support.images import encode_image, names_in_different_splits, near_copies, scene_photo


def _hash(image) -> str:
    return images.perceptual_hash(encode_image(image, "JPEG", quality=95))


def _print(path, mtime, photo_hash, sha=None):
    return Fingerprint(path, images.class_of(path), mtime, sha or path, photo_hash)


def _resolved(fingerprints, max_distance=64):
    records = list(near_duplicates.resolve(fingerprints, max_distance, 10, 10))
    overrides = dict(record for kind, record in records if kind == "override")
    return overrides, [(kind, record) for kind, record in records if kind != "override"]


def test_perceptual_hashes_of_copies_are_close_and_of_other_photos_far():
    photo = scene_photo(3)
    distance = near_duplicates.largest_distance
    copies = [_print(f"a/{name}.jpg", 0, images.perceptual_hash(raw))
              for name, raw in near_copies(photo).items()]
    original = _print("a/original.jpg", 0, _hash(photo))
    assert distance([original, *copies]) <= 64
    for other in (scene_photo(4), scene_photo(3, offset=(0.15, 0.1))):
        assert distance([original, _print("a/other.jpg", 0, _hash(other))]) > 96
    assert len(original.phash) == images.PERCEPTUAL_HASH_BITS // 4  # hex


def test_a_flat_photo_has_no_perceptual_hash():
    from PIL import Image

    assert images.perceptual_hash(encode_image(Image.new("RGB", (40, 30), (200, 10, 10)),
                                               "PNG")) == ""


def test_a_group_goes_to_the_split_of_its_oldest_member():
    old, new = names_in_different_splits()
    photo = _hash(scene_photo(5))
    # The new copy's name sorts first, and its own split differs: the old photo stays put.
    overrides, records = _resolved([_print(f"a/{new}", 2, photo), _print(f"a/{old}", 1, photo)])
    split = images.which_split(old, 10, 10)
    assert overrides == {f"a/{old}": split, f"a/{new}": split}
    ((kind, record),) = records
    assert kind == "near_duplicate" and record["oldest"] == f"a/{old}"
    assert record["split"] == split and record["distance"] == 0


def _flipped(photo_hash: str, bits: range) -> str:
    value = int(photo_hash, 16)
    for bit in bits:
        value ^= 1 << bit
    return f"{value:0{len(photo_hash)}x}"


def test_links_chain_and_identical_bytes_link_without_a_hash():
    first = _hash(scene_photo(6))
    second, third = _flipped(first, range(0, 40)), _flipped(first, range(0, 80))
    fingerprints = [_print("a/1.jpg", 1, first), _print("a/2.jpg", 2, second),
                    _print("a/3.jpg", 3, third),  # 40 bits from the second, 80 from the first
                    _print("a/4.jpg", 4, "", sha="same"), _print("a/5.jpg", 5, "", sha="same"),
                    _print("a/6.jpg", 6, _flipped(first, range(150, 256)))]
    _, records = _resolved(fingerprints)
    assert [(kind, record["files"]) for kind, record in records] == [
        ("near_duplicate", ["a/1.jpg", "a/2.jpg", "a/3.jpg"]),
        ("duplicate", ["a/4.jpg", "a/5.jpg"])]
    assert records[0][1]["distance"] == 80
    # 0: identical files only.
    assert [kind for kind, _ in _resolved(fingerprints, max_distance=0)[1]] == ["duplicate"]


def test_copies_in_two_classes_are_a_conflict_and_all_left_out():
    photo = _hash(scene_photo(8))
    overrides, records = _resolved([_print("ant/x.jpg", 1, photo), _print("bee/y.jpg", 2, photo),
                                    _print("bee/z.jpg", 3, photo)])
    assert overrides == dict.fromkeys(["ant/x.jpg", "bee/y.jpg", "bee/z.jpg"],
                                      near_duplicates.DROP)
    assert records == [("conflict", {"files": ["ant/x.jpg", "bee/y.jpg", "bee/z.jpg"],
                                     "classes": ["ant", "bee"], "identical": False})]


def test_near_pairs_are_exactly_those_within_the_distance_across_chunks(monkeypatch):
    import numpy as np

    rng = np.random.default_rng(0)
    packed = rng.integers(0, 256, size=(40, 32), dtype=np.uint8)
    # Copies at exactly 64 and 65 bits from photo 0, so the threshold itself is checked.
    for row, flips in ((1, 64), (2, 65)):
        bits = np.unpackbits(packed[0])
        bits[rng.choice(256, flips, replace=False)] ^= 1
        packed[row] = np.packbits(bits)
    prints = [_print(f"a/{index}.jpg", 0, row.tobytes().hex()) for index, row in
              enumerate(packed)]
    prints.append(_print("a/flat.jpg", 0, ""))  # no hash: never paired
    monkeypatch.setattr(near_duplicates, "DISTANCE_CHUNK", 7)
    rows, columns = near_duplicates._near_pairs(prints, 64)
    bits = np.unpackbits(packed, axis=1)
    expected = {(i, j) for i in range(40) for j in range(40)
                if int((bits[i] != bits[j]).sum()) <= 64}
    assert set(zip(rows.tolist(), columns.tolist(), strict=True)) == expected
    assert (0, 1) in expected and (0, 2) not in expected
