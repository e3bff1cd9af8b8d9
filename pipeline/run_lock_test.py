import os
import signal
import subprocess
import sys
import time

import pytest

from pipeline import run_lock

_HOLD_SCRIPT = """
import sys, time
from pipeline import run_lock
with run_lock.hold(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def _start_holder(root):
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_SCRIPT, str(root)], stdout=subprocess.PIPE, text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(run_lock.__file__))),
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path):
    holder = _start_holder(tmp_path)
    try:
        with pytest.raises(run_lock.RunLockedError) as refused:
            with run_lock.hold(str(tmp_path)):
                pass
        message = str(refused.value)
        assert f"pid {holder.pid}" in message
        assert str(tmp_path) in message and "--pipeline-root" in message
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_is_free_again_after_its_holder_is_killed(tmp_path):
    holder = _start_holder(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    started = time.time()
    with run_lock.hold(str(tmp_path)):
        assert (tmp_path / run_lock.LOCK_FILE).read_text().startswith('{"pid": ')
    assert time.time() - started < 5


def test_holding_in_turn_works_and_creates_the_root(tmp_path):
    root = tmp_path / "new" / "root"
    for _ in range(2):
        with run_lock.hold(str(root)):
            pass
    assert (root / run_lock.LOCK_FILE).read_text() == ""
