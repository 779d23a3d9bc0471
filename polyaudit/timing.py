"""Where an audit's time goes: seconds spent inside the audited models' forward passes.

Every model a run audits (and every member of a dropout family) has its top-level `forward` wrapped
once by `ForwardClock.watch`, so each pass counts however it is started: a capture's truncated
forward, a downstream evaluation of C2/C3, a prefix-cached step, a replacement run. A truncated
forward ends with an exception (StopForward) and still counts; nested calls count once.
`benchmarks/bench_audit.py` reads the clock per claim to show that the audit costs little more
than its forward passes.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import Any

from torch import nn

_WATCHED = "_polyaudit_forward_clock"


class ForwardClock:
    """Accumulated seconds and calls of the watched models' forward passes (process-wide)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self._local = threading.local()

    def watch(self, model: nn.Module) -> nn.Module:
        """Time every call of `model`'s forward from now on (idempotent)."""
        if getattr(model, _WATCHED, None) is self:
            return model
        inner = model.forward

        @functools.wraps(inner)
        def forward(*args: Any, **kwargs: Any) -> Any:
            depth = getattr(self._local, "depth", 0)
            if depth:
                return inner(*args, **kwargs)
            self._local.depth = 1
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0
                self.calls += 1
                self._local.depth = 0

        model.forward = forward
        object.__setattr__(model, _WATCHED, self)
        return model

    def snapshot(self) -> tuple[float, int]:
        return self.seconds, self.calls


FORWARD_CLOCK = ForwardClock()
