"""bench/feature_pass_speed.py finds the run's any-size module, or says in one line to pass it."""

import pytest

from bench import feature_pass_speed


def test_the_one_module_of_the_root_is_found_else_one_line_names_the_flag(tmp_path):
    with pytest.raises(SystemExit, match="no module; pass --module"):
        feature_pass_speed.backbone_dir(str(tmp_path))
    (tmp_path / "backbones" / "a-any-size").mkdir(parents=True)
    assert feature_pass_speed.backbone_dir(str(tmp_path)) == str(
        tmp_path / "backbones" / "a-any-size")
    (tmp_path / "backbones" / "b-any-size").mkdir()
    with pytest.raises(SystemExit, match=r"\['a-any-size', 'b-any-size'\]; pass --module"):
        feature_pass_speed.backbone_dir(str(tmp_path))
