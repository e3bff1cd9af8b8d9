"""The layers point one way (docs/architecture.md): runners, tools and bench on top; pipeline/
builds pipelines; components/ are the custom components; models/ is the module code the
Transform and the Trainer load. Checked on the import statements of every production module,
those inside functions included, with `ast`."""

from __future__ import annotations

import ast
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
TOP_LEVEL = ("runner_local", "runner_airflow", "runner_kubeflow", "label_image")
# package -> the project's top-level names it must not import.
FORBIDDEN = {
    "models": ("pipeline", "components", "tools", "bench", *TOP_LEVEL),
    "components": ("pipeline", "tools", "bench", *TOP_LEVEL),
    "pipeline": ("tools", "bench", *TOP_LEVEL),
    "tools": ("bench", *TOP_LEVEL),
}
# A production module longer than this needs a reason here.
MAX_LINES = 400
LONG_MODULES: dict[str, str] = {}


def production_modules(package: str) -> list[pathlib.Path]:
    return sorted(path for path in (REPO_ROOT / package).rglob("*.py")
                  if not path.name.endswith("_test.py"))


def imported_top_names(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_module_imports_a_layer_above_its_own(package):
    wrong = {
        str(path.relative_to(REPO_ROOT)): sorted(imported_top_names(path) & set(FORBIDDEN[package]))
        for path in production_modules(package)
    }
    assert production_modules(package), f"no modules found under {package}/"
    assert {path: names for path, names in wrong.items() if names} == {}


def test_the_import_check_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "module.py"
    module.write_text("import os\n\ndef f():\n    from pipeline import config\n")
    assert imported_top_names(module) == {"os", "pipeline"}


def test_no_production_module_is_long_without_a_reason():
    lengths = {
        str(path.relative_to(REPO_ROOT)): len(path.read_text().splitlines())
        for package in (*FORBIDDEN, "bench")
        for path in production_modules(package)
    }
    long = {path: lines for path, lines in lengths.items()
            if lines > MAX_LINES and path not in LONG_MODULES}
    assert long == {}
