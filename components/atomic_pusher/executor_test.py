import json
import os
import pathlib
import shutil

import pytest
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from components.atomic_pusher import executor


def _model(tmp_path, name="model", content=b"graph"):
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / name)
    serving = tmp_path / name / "Format-Serving"
    (serving / "variables").mkdir(parents=True)
    (serving / "saved_model.pb").write_bytes(content)
    (serving / "variables" / "variables.data-00000-of-00001").write_bytes(b"w" * 1000)
    return model


def _blessing(tmp_path, blessed=True):
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    blessing.set_int_custom_property("blessed", int(blessed))
    return blessing


def _push(tmp_path, model, blessed=True):
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / f"pushed_{len(os.listdir(tmp_path))}")
    os.makedirs(pushed.uri)
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(tmp_path / "serving"))
    )
    executor.Executor().Do(
        {
            standard_component_specs.MODEL_KEY: [model],
            standard_component_specs.MODEL_BLESSING_KEY: [_blessing(tmp_path, blessed)],
        },
        {standard_component_specs.PUSHED_MODEL_KEY: [pushed]},
        {standard_component_specs.PUSH_DESTINATION_KEY: proto_utils.proto_to_json(destination)},
    )
    return pushed


def test_a_blessed_model_is_pushed_whole_to_a_numbered_folder(tmp_path):
    pushed = _push(tmp_path, _model(tmp_path))
    assert pushed.get_int_custom_property("pushed") == 1
    version = pushed.get_string_custom_property("pushed_version")
    target = tmp_path / "serving" / version
    assert pushed.get_string_custom_property("pushed_destination") == str(target)
    assert (target / "saved_model.pb").read_bytes() == b"graph"
    assert (target / "variables" / "variables.data-00000-of-00001").stat().st_size == 1000
    assert os.listdir(tmp_path / "serving") == [version]


def test_an_unblessed_model_is_not_pushed(tmp_path):
    pushed = _push(tmp_path, _model(tmp_path), blessed=False)
    assert pushed.get_int_custom_property("pushed") == 0
    assert not (tmp_path / "serving").exists()


def test_the_same_model_again_is_not_copied_again_but_a_new_one_is(tmp_path):
    first = _push(tmp_path, _model(tmp_path))
    again = _push(tmp_path, _model(tmp_path, "same_model_rerun"))
    assert again.get_string_custom_property("pushed_version") == first.get_string_custom_property(
        "pushed_version"
    )
    changed = _push(tmp_path, _model(tmp_path, "retrained", content=b"other graph"))
    assert int(changed.get_string_custom_property("pushed_version")) > int(
        first.get_string_custom_property("pushed_version")
    )
    assert len(executor.pushed_versions(str(tmp_path / "serving"))) == 2


def test_a_push_that_dies_mid_copy_leaves_no_version_and_the_next_push_cleans_up(
    tmp_path, monkeypatch
):
    copied = []
    real_copytree = shutil.copytree

    def copy_then_die(source, target, **kwargs):
        if copied:
            raise KeyboardInterrupt  # stands in for the process dying between two files
        copied.append(target)
        return shutil.copy2(source, target, **kwargs)

    monkeypatch.setattr(
        shutil, "copytree",
        # copytree calls itself for subfolders with positional arguments.
        lambda source, target, *args, **kwargs: real_copytree(
            source, target, copy_function=copy_then_die
        ),
    )
    with pytest.raises(KeyboardInterrupt):
        _push(tmp_path, _model(tmp_path))
    leftovers = os.listdir(tmp_path / "serving")
    assert len(leftovers) == 1 and leftovers[0].startswith(executor.PARTIAL_PREFIX)
    assert executor.pushed_versions(str(tmp_path / "serving")) == []

    monkeypatch.undo()
    pushed = _push(tmp_path, _model(tmp_path, "same_model_rerun"))
    assert os.listdir(tmp_path / "serving") == [pushed.get_string_custom_property("pushed_version")]


def test_a_push_shares_the_models_bytes_by_hard_links(tmp_path):
    model = _model(tmp_path)
    pushed = _push(tmp_path, model)
    version = tmp_path / "serving" / pushed.get_string_custom_property("pushed_version")
    serving = pathlib.Path(model.uri) / "Format-Serving"
    source_files = sorted(p for p in serving.rglob("*") if p.is_file())
    assert len(source_files) == 2
    for source in source_files:
        target = version / source.relative_to(serving)
        assert target.read_bytes() == source.read_bytes()
        assert os.stat(target).st_ino == os.stat(source).st_ino


def test_link_or_copy_copies_when_linking_fails(tmp_path, monkeypatch):
    source = tmp_path / "a"
    source.write_bytes(b"model")

    def no_links(*args, **kwargs):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    executor.link_or_copy(str(source), str(tmp_path / "b"))
    assert (tmp_path / "b").read_bytes() == b"model"
    assert os.stat(tmp_path / "b").st_ino != os.stat(source).st_ino


def test_versions_stay_apart_and_increase_within_one_second(tmp_path):
    (tmp_path / "1000").mkdir()
    (tmp_path / "notes").mkdir()
    assert executor.next_version(str(tmp_path), now=1000.5) == "1001"
    assert executor.next_version(str(tmp_path), now=2000.0) == "2000"
    assert executor.next_version(str(tmp_path / "missing"), now=5.0) == "5"


def test_fingerprint_sees_content_and_names(tmp_path):
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f").write_text("x")
    (tmp_path / "c" / "f").write_text("y")
    (tmp_path / "b" / "f").rename(tmp_path / "b" / "g")
    prints = {name: executor.tree_fingerprint(str(tmp_path / name)) for name in "abc"}
    assert len(set(prints.values())) == 3
    assert json.dumps(prints)  # plain strings, storable in ML Metadata
