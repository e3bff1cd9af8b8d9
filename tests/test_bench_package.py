"""bench/ is a package run as `python -m bench.<script>`: no script edits sys.path, scripts
import each other only through the shared modules, and every script's -h works."""

import ast
import functools
import json
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"


@functools.cache
def _trees() -> dict[str, ast.Module]:
    """{module name: its syntax tree} of every bench/*.py, __init__ included."""
    return {path.stem: ast.parse(path.read_text(), str(path))
            for path in sorted(BENCH.glob("*.py"))}


def _is_script(tree: ast.Module) -> bool:
    """Whether the module has a top-level `if __name__ == "__main__":`."""
    return any(
        isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
        and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"
        for node in tree.body
    )


SCRIPTS = sorted(name for name, tree in _trees().items() if _is_script(tree))
SYS_PATH_EDITS = ("insert", "append", "extend", "remove", "pop", "clear")


def _edits_sys_path(node: ast.AST) -> bool:
    """`sys.path.insert(...)` and the like, or an assignment to `sys.path` or a slice of it."""
    if isinstance(node, ast.Call):
        return ast.unparse(node.func) in {f"sys.path.{edit}" for edit in SYS_PATH_EDITS}
    if isinstance(node, ast.Assign | ast.AugAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return any(ast.unparse(target).startswith("sys.path") for target in targets)
    return False


def test_the_scripts_are_found():
    assert {"compare", "keras_reference", "recipe_cv", "trainer_memory"} <= set(SCRIPTS)
    assert not {"__init__", "common", "photos"} & set(SCRIPTS)


def test_no_module_edits_sys_path():
    edits = [
        f"bench/{name}.py:{node.lineno}: {ast.unparse(node)}"
        for name, tree in _trees().items()
        for node in ast.walk(tree)
        if _edits_sys_path(node)
    ]
    assert edits == []


def _bench_modules_imported(node: ast.AST) -> list[str]:
    """The bench modules an import statement names: `bench.x`, `from bench import x`, and a
    bare `x` (or `.x`) that is a bench module's name, as a script beside it would import it."""
    if isinstance(node, ast.Import):
        dotted = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module in ("bench", None):
        dotted = [f"bench.{alias.name}" for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        dotted = [node.module]
    else:
        return []
    modules = []
    for name in dotted:
        parts = name.split(".")
        if parts[0] == "bench" and len(parts) > 1:
            modules.append(parts[1])
        elif parts[0] in _trees():
            modules.append(parts[0])
    return modules


def test_scripts_import_each_other_only_through_shared_modules():
    imported = [
        f"bench/{name}.py:{node.lineno} imports the script bench.{module}"
        for name, tree in _trees().items()
        for node in ast.walk(tree)
        for module in _bench_modules_imported(node)
        if module in SCRIPTS
    ]
    assert imported == []


def test_docstrings_name_the_scripts_as_modules():
    old_style = [f"bench/{path.name}" for path in BENCH.glob("*.py")
                 if "python bench/" in path.read_text()]
    assert old_style == []


# Each script as `python -m` runs it (runpy, __main__), with -h: all in one interpreter, so
# TensorFlow is imported once.
HELP_ALL = """
import contextlib, io, json, runpy, sys
results = {}
for name in sys.argv[1:]:
    sys.argv = [name, "-h"]
    out = io.StringIO()
    code = "no exit"
    with contextlib.redirect_stdout(out):
        try:
            runpy.run_module(f"bench.{name}", run_name="__main__", alter_sys=True)
        except SystemExit as exit_:
            code = exit_.code
    results[name] = [code, out.getvalue()]
print(json.dumps(results))
"""


def test_every_script_prints_its_help_as_a_module():
    completed = subprocess.run(
        [sys.executable, "-c", HELP_ALL, *SCRIPTS], cwd=REPO, capture_output=True, text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(completed.stdout.strip().splitlines()[-1])
    for name in SCRIPTS:
        code, text = results[name]
        assert code == 0, (name, code, text)
        assert text.startswith("usage: "), (name, text)
