"""Quiet, readable console output for long runs: progress lines, not library noise."""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings

# TFX's own progress lines worth showing; the rest of its INFO output is exec-property dumps.
_TFX_PROGRESS = re.compile(r"^Component \S+ is (running|finished)\.")
# Every package of the project (tests/test_layers.py lists them): their INFO lines are progress.
_OWN_LOGGERS = ("components", "models", "pipeline", "tools")


def quiet_environment() -> None:
    """Call before TensorFlow is imported: silences its C++ start-up chatter (CUDA probes)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # Deprecation notices from libraries the user cannot act on.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.api_core")
    warnings.filterwarnings("ignore", message=r"pkg_resources is deprecated")
    warnings.filterwarnings("ignore", category=DeprecationWarning)


class _ProgressFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(_OWN_LOGGERS):
            return record.levelno >= logging.INFO
        if record.levelno >= logging.ERROR:
            return True
        return record.levelno == logging.INFO and bool(_TFX_PROGRESS.match(record.getMessage()))


def configure_progress_logging(verbose: bool = False) -> None:
    """Shows our progress lines and TFX's component start/finish; `verbose` shows everything."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    if not verbose:
        handler.addFilter(_ProgressFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    try:
        from absl import logging as absl_logging

        # absl would otherwise add its own handler and print everything twice.
        absl_logging.use_python_logging(quiet=True)
        absl_logging.set_verbosity(absl_logging.INFO)
    except ImportError:
        pass
