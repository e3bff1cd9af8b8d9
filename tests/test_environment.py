"""The installed environment as scripts/setup.sh leaves it."""

import importlib.util
import os

import pytest

# The packages every pipeline process imports; compiling them from source cost each process
# about 30 s (BENCHMARKS.md, "Startup").
HEAVY_PACKAGES = ("tensorflow", "tfx", "apache_beam", "tensorflow_model_analysis")


@pytest.mark.parametrize("package", HEAVY_PACKAGES)
def test_installed_packages_carry_compiled_bytecode(package):
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.origin, f"{package} is not installed: run scripts/setup.sh"
    cached = importlib.util.cache_from_source(spec.origin)
    assert os.path.exists(cached), (
        f"{package} has no compiled bytecode ({cached}): every process compiles it from "
        "source; run scripts/setup.sh, which installs with `uv pip sync --compile-bytecode`")
