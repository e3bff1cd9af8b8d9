"""One run at a time per pipeline root: an exclusive lock on `<pipeline-root>/run.lock`.

Two LocalDagRunner runs on one root would share one SQLite ML Metadata store and the same
serving_model/ folder; TFX does not coordinate them. The lock is an OS file lock (flock), so a
run that dies, even by SIGKILL, releases it with its process: there is no stale lock to clean.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator

LOCK_FILE = "run.lock"


class RunLockedError(RuntimeError):
    """Another process holds the pipeline root; the message says which and what to do."""


def _holder_description(lock_file) -> str:
    lock_file.seek(0)
    try:
        holder = json.loads(lock_file.read() or "{}")
    except ValueError:
        holder = {}
    if not holder:
        return "another run"
    started = time.strftime("%H:%M:%S", time.localtime(holder.get("started", 0)))
    return f"another run (pid {holder.get('pid')}, started {started})"


@contextlib.contextmanager
def hold(pipeline_root: str) -> Iterator[None]:
    """Holds the pipeline root's lock for the duration, or raises RunLockedError at once."""
    os.makedirs(pipeline_root, exist_ok=True)
    path = os.path.join(pipeline_root, LOCK_FILE)
    # "a+" neither truncates a holder's record nor fails when the file exists.
    with open(path, "a+", encoding="utf-8") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(
                f"{_holder_description(lock_file)} is using --pipeline-root {pipeline_root}; "
                "wait for it to finish, or pass another --pipeline-root"
            ) from None
        lock_file.seek(0)
        lock_file.truncate()
        lock_file.write(json.dumps({"pid": os.getpid(), "started": time.time()}))
        lock_file.flush()
        try:
            yield
        finally:
            lock_file.seek(0)
            lock_file.truncate()
            fcntl.flock(lock_file, fcntl.LOCK_UN)
