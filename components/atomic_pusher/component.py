"""AtomicPusher: TFX's Pusher whose local pushes are all-or-nothing (see executor.py)."""

from __future__ import annotations

from tfx.components import Pusher
from tfx.dsl.components.base import executor_spec

from components.atomic_pusher import executor


class AtomicPusher(Pusher):
    """Same inputs, outputs and parameters as `tfx.components.Pusher`."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)
