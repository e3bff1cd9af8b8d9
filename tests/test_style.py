"""The code base stays ruff clean and free of generated files in git."""

import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent


def test_ruff_is_clean():
    completed = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."], cwd=REPO, capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_no_generated_files_are_tracked():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    generated = [
        path for path in tracked
        if "__pycache__" in path or path.endswith((".pyc", "metadata.db"))
        or path.startswith(("tfx_poets_output/", ".venv/"))
    ]
    assert generated == []
