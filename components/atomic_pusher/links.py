"""Hard links with a copy to fall back on: no TensorFlow, so bench/ can use it too."""

from __future__ import annotations

import os
import shutil


def link_or_copy(source: str, target: str, *, follow_symlinks: bool = True) -> str:
    """A hard link where source and target share a file system, else a copy.

    Model artifacts and pushed versions are never modified in place, so they can share their
    bytes: a push then costs no disk space (about 45 MB per MobileNet 1.0 model).
    """
    try:
        os.link(source, target, follow_symlinks=follow_symlinks)
    except OSError:
        shutil.copy2(source, target, follow_symlinks=follow_symlinks)
    return target
