"""TFX's own source package for Beam workers, built once per TFX version, not once per step.

Given Beam arguments without a dependency flag (--extra_package, --setup_file, ...), TFX's
BaseBeamExecutor copies the installed `tfx` to a new temporary folder and builds an sdist of it
(tfx.utils.dependency_utils.build_ephemeral_package) for every Beam step of every run, so that
remote workers can import TFX, and never removes that folder: 42 MB left in the temporary
folder and about 2 s per step on these machines. Handing it the sdist built once (kept in the
cache folder) gives workers the same package without either cost.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

# The Beam options that make TFX skip building its package (dependency_utils' list).
DEPENDENCY_OPTIONS = ("extra_packages", "setup_file", "requirements_file",
                      "worker_harness_container_image", "sdk_container_image")


def has_dependency_option(beam_args: Sequence[str]) -> bool:
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(flags=list(beam_args)).get_all_options()
    return any(options.get(name) for name in DEPENDENCY_OPTIONS)


def cached_tfx_package(cache_dir: str, build=None) -> str:
    """The sdist of the installed TFX in `cache_dir`, built there once (`build`: TFX's own
    builder, returning the path of a .tar.gz under a temporary folder of its own)."""
    from tfx import version

    target = os.path.join(cache_dir, "tfx_package", f"tfx_ephemeral-{version.__version__}.tar.gz")
    if os.path.isfile(target):
        return target
    if build is None:
        from tfx.utils import dependency_utils

        build = dependency_utils.build_ephemeral_package
    built = build()
    os.makedirs(os.path.dirname(target), exist_ok=True)
    partial = f"{target}.{os.getpid()}.partial"
    shutil.copyfile(built, partial)
    os.replace(partial, target)  # atomic: parallel runs never read half a file
    # The builder's folder is <tempdir>/build/tfx/dist/<file>; remove all of <tempdir>.
    temporary = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(built))))
    shutil.rmtree(temporary, ignore_errors=True)
    return target


def with_tfx_package(beam_args: Sequence[str], cache_dir: str, build=None) -> tuple[str, ...]:
    """`beam_args` plus --extra_package of the cached TFX sdist, unless they name a dependency
    already (then TFX builds nothing either)."""
    if has_dependency_option(beam_args):
        return tuple(beam_args)
    return (*beam_args, f"--extra_package={cached_tfx_package(cache_dir, build)}")
