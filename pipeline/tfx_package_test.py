import os
import tarfile

from pipeline import tfx_package


def _fake_builder(tmp_path, calls):
    """Stands in for TFX's builder: a tarball under <tempdir>/build/tfx/dist/, as TFX lays it."""

    def build():
        calls.append(1)
        dist = tmp_path / f"tmp{len(calls)}" / "build" / "tfx" / "dist"
        dist.mkdir(parents=True)
        path = dist / "tfx_ephemeral-1.16.0.tar.gz"
        with tarfile.open(path, "w:gz"):
            pass
        return str(path)

    return build


def test_the_package_is_built_once_and_its_temporary_folder_removed(tmp_path):
    calls = []
    build = _fake_builder(tmp_path / "temp", calls)
    args = ("--runner=DirectRunner", "--direct_num_workers=1")
    first = tfx_package.with_tfx_package(args, str(tmp_path / "cache"), build)
    second = tfx_package.with_tfx_package(args, str(tmp_path / "cache"), build)
    assert first == second and len(calls) == 1
    assert first[:2] == args and first[2].startswith("--extra_package=")
    package = first[2].split("=", 1)[1]
    assert package.startswith(str(tmp_path / "cache")) and tarfile.is_tarfile(package)
    assert not os.path.exists(tmp_path / "temp" / "tmp1")
    assert tfx_package.has_dependency_option(first)


def test_given_dependency_flags_are_kept_and_nothing_is_built(tmp_path):
    calls = []
    for flag in ("--extra_package=/x.tar.gz", "--setup_file=./setup.py",
                 "--sdk_container_image=apache/beam_python3.10_sdk"):
        args = ("--runner=PortableRunner", flag)
        assert tfx_package.with_tfx_package(args, str(tmp_path), _fake_builder(tmp_path, calls)) \
            == args
    assert calls == []


def test_tfx_builds_no_package_of_its_own_with_these_arguments(tmp_path, monkeypatch):
    """What the flags are for: TFX's own helper then returns them unchanged."""
    from tfx.utils import dependency_utils

    monkeypatch.setattr(dependency_utils, "build_ephemeral_package",
                        lambda: (_ for _ in ()).throw(AssertionError("built a package")))
    args = tfx_package.with_tfx_package(("--runner=DirectRunner",), str(tmp_path),
                                        _fake_builder(tmp_path, []))
    assert dependency_utils.make_beam_dependency_flags(list(args)) == list(args)
