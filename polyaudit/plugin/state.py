"""What the plugin keeps in `config.stash`, the key report rows travel under, and the outcomes a claim
test raises (FAIL, INCONCLUSIVE, ERROR): the bottom of the plugin package, imported by every part."""

from __future__ import annotations

import json
from typing import Any

import pytest

ROW_KEY = "polyaudit_row"  # report rows travel in report.user_properties under this key

OPTIONS = pytest.StashKey[Any]()  # polyaudit.run.options.RunOptions, from the command line
RUNTIME = pytest.StashKey[Any]()  # polyaudit.run.runtime.Runtime, built once a claim is collected
FAMILY_ERROR = pytest.StashKey[str]()
RECORDER = pytest.StashKey[Any]()  # polyaudit.plugin.recorder.Recorder
CACHE_CAP = pytest.StashKey[Any]()  # polyaudit.store.limit.CacheCap or None
GATE = pytest.StashKey[Any]()  # polyaudit.plugin.gate.Gate


class ClaimOutcome(Exception):
    status = "?"


class ClaimFailed(ClaimOutcome):
    status = "FAIL"


class ClaimInconclusive(ClaimOutcome):
    status = "INCONCLUSIVE"


class ClaimError(ClaimOutcome):
    status = "ERROR"


def runtime_of(config: pytest.Config) -> Any:
    """The run's Runtime, built on first use (a run that collects no claim never builds one, and
    never imports torch, transformers or scipy)."""
    runtime = config.stash.get(RUNTIME, None)
    if runtime is None:
        from polyaudit.run.runtime import Runtime  # heavy: only once a claim needs it
        from polyaudit.threads import share_cores

        runtime = config.stash[RUNTIME] = Runtime(config.stash[OPTIONS])
        share_cores()  # a pytest-xdist worker takes its share of the cores
    return runtime


def row_of(report: Any) -> dict[str, Any] | None:
    """The report row a test report carries, or None."""
    for key, value in getattr(report, "user_properties", ()):
        if key == ROW_KEY:
            return json.loads(value) if isinstance(value, str) else dict(value)
    return None
