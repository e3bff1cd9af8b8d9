"""What the bench scripts share: the environment TensorFlow reads at import, the repo root, the
machine, RSS readings and samplers, timing, and the paired standard error. Imports neither
TensorFlow nor the pipeline."""

from __future__ import annotations

import math
import os
import resource
import statistics
import sys
import threading
import time

import psutil

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MB = 2**20


def tensorflow_defaults(log_level: str | None = None, onednn: bool = False) -> None:
    """Sets, where not set already, what TensorFlow reads when it is imported: tf_keras as
    Keras (TF_USE_LEGACY_KERAS=1, as the pipeline runs), TF_CPP_MIN_LOG_LEVEL=`log_level`, and
    with `onednn` TF_ENABLE_ONEDNN_OPTS=1 as runner_local.py sets it. Call it before anything
    imports TensorFlow."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    if log_level is not None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", log_level)
    if onednn:
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def module_command(module: str, *args: str) -> list[str]:
    """`python -m module args` with this interpreter: a bench script run again in a fresh
    process (started from the same folder, so `bench` imports there as it did here)."""
    return [sys.executable, "-m", module, *args]


# ---------------------------------------------------------------------------------------------
# The machine


def cpu_count() -> int:
    """CPUs this process may run on (a container's or taskset's limit, not the host's): what
    nproc prints."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # Not on Linux.
        return os.cpu_count() or 1


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    try:
        with open(cpuinfo) as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def machine_description() -> str:
    """'2 cores (nproc), 7.8 GiB RAM, <CPU model>'."""
    memory = psutil.virtual_memory().total / 2**30
    return f"{cpu_count()} cores (nproc), {memory:.1f} GiB RAM, {cpu_model()}"


# ---------------------------------------------------------------------------------------------
# Memory


def peak_rss_mb() -> float:
    """This process's peak RSS so far, in MB (2^20), as the kernel keeps it."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def rss_bytes(pid: int | None = None) -> int:
    """The RSS of process `pid` (default: this one) now."""
    return psutil.Process(pid).memory_info().rss


def tree_rss_bytes(pid: int) -> int | None:
    """The summed RSS of process `pid` and all its descendants; None once `pid` is gone."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            pass  # exited between listing and reading
    return total


class PeriodicThread:
    """Calls `function()` every `interval_s` from a daemon thread, from `start()` until `stop()`
    (or until the process ends)."""

    def __init__(self, interval_s: float, function, name: str = "sampler"):
        self.interval_s = interval_s
        self._function = function
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def _loop(self) -> None:
        while not self._stopped.is_set():
            self._function()
            self._stopped.wait(self.interval_s)

    def start(self) -> PeriodicThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()


class TreeRssSampler:
    """Samples `tree_rss_bytes(pid)` every `interval_s` from a thread until stopped.

    `samples` is the series [(time.time(), bytes)]; `peak_bytes` / `peak_time` its maximum.
    """

    def __init__(self, pid: int, interval_s: float = 0.2):
        self.pid = pid
        self.interval_s = interval_s
        self.samples: list[tuple[float, int]] = []
        self.peak_bytes = 0
        self.peak_time: float | None = None
        self._thread = PeriodicThread(interval_s, self.sample, name="rss-sampler")

    def sample(self) -> None:
        rss = tree_rss_bytes(self.pid)
        if rss is None:
            return
        now = time.time()
        self.samples.append((now, rss))
        if rss > self.peak_bytes:
            self.peak_bytes, self.peak_time = rss, now

    def start(self) -> TreeRssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._thread.stop()

    def __enter__(self) -> TreeRssSampler:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------
# Time


def timed_calls(call, warmup: int, repeats: int) -> tuple[list[float], list[float]]:
    """Calls `call(index)` for index 0 .. warmup - 1 untimed, then for index 0 .. repeats - 1
    timed: (wall seconds, CPU seconds of all this process's threads) of each timed call."""
    for index in range(warmup):
        call(index)
    walls, cpus = [], []
    for index in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        call(index)
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu_started)
    return walls, cpus


def median_seconds(call, warmup: int, repeats: int) -> float:
    """The median wall seconds of `timed_calls`."""
    walls, _ = timed_calls(call, warmup, repeats)
    return statistics.median(walls)


# ---------------------------------------------------------------------------------------------
# Statistics


def mean_and_standard_error(values) -> tuple[float, float]:
    """(mean, standard error of the mean) of `values`, e.g. per-photo differences of two
    recipes on the same photos (a paired comparison); the error is nan for under 2 values."""
    values = [float(value) for value in values]
    if len(values) < 2:
        return (values[0] if values else 0.0), float("nan")
    return statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values))
