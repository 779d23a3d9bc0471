"""Where an audit's time goes: seconds spent inside the audited models' forward passes.

Every model a run audits (and every member of a dropout family) has its top-level `forward` wrapped
once by `ForwardClock.watch`, so each pass counts however it is started: a capture's truncated
forward, a downstream evaluation of C2/C3, a prefix-cached step, a replacement run. A truncated
forward ends with an exception (StopForward) and still counts; nested calls count once. A deep
copy of a watched model (e.g. a float64 copy for exact walks) runs its own weights and is timed
by the same clock. `benchmarks/bench_audit.py` reads the clock per claim to show that the audit
costs little more than its forward passes.
"""

from __future__ import annotations

import copy
import functools
import threading
import time
from typing import Any

from torch import nn


class _Timed:
    """The watched forward: calls the module's previous forward and adds its time to the clock."""

    def __init__(self, clock: ForwardClock, inner: Any) -> None:
        self.clock = clock
        self.inner = inner  # the bound forward (or an accelerate hook) of the watched module
        functools.update_wrapper(self, inner)  # signature, name and docstring of the real forward

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        local = self.clock.local
        if getattr(local, "depth", 0):
            return self.inner(*args, **kwargs)
        local.depth = 1
        t0 = time.perf_counter()
        try:
            return self.inner(*args, **kwargs)
        finally:
            self.clock.seconds += time.perf_counter() - t0
            self.clock.calls += 1
            local.depth = 0

    def __deepcopy__(self, memo: dict[int, Any]) -> _Timed:
        # the copy's forward is bound to the copied module (memo), timed by the same clock
        return _Timed(self.clock, copy.deepcopy(self.inner, memo))


class ForwardClock:
    """Accumulated seconds and calls of the watched models' forward passes (process-wide)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self.local = threading.local()

    def watch(self, model: nn.Module) -> nn.Module:
        """Time every call of `model`'s forward from now on (idempotent)."""
        current = model.__dict__.get("forward")
        if isinstance(current, _Timed) and current.clock is self:
            return model
        model.forward = _Timed(self, model.forward)
        return model

    def snapshot(self) -> tuple[float, int]:
        return self.seconds, self.calls


FORWARD_CLOCK = ForwardClock()
