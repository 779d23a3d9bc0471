"""Helpers for the report and baseline tests: a pytester project with a tiny factory model and fake
claims whose effects come from `effects.json` in the run's folder (so a second run can drop one)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema  # noqa: F401
import matplotlib.backends.backend_agg
import matplotlib.figure  # noqa: F401
import numpy.fft  # noqa: F401
import pytest
import sklearn.datasets  # noqa: F401
import torch  # noqa: F401
from report_fakes import FACTORY, GATE_CLAIM, effects

# pytester's in-process runs drop the modules first imported inside them; extension modules (torch,
# numpy.fft, scipy/sklearn, matplotlib, jsonschema's rpds) cannot be imported twice, so they are
# imported once here, before any run.
import polyaudit.models.loader
import polyaudit.probes.registry  # noqa: F401


@pytest.fixture
def gate_project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A folder with the factory module, the C7 gate claim and effects.json (two passing sites)."""
    pytester.makepyfile(factory64=FACTORY, test_gate_claim=GATE_CLAIM)
    pytester.syspathinsert()
    (pytester.path / "effects.json").write_text(json.dumps(effects(alpha=0.8, beta=0.6)))
    return pytester


@pytest.fixture
def set_effects(gate_project: pytest.Pytester) -> Callable[..., None]:
    def _set(**sites: float | dict[str, Any]) -> None:
        (gate_project.path / "effects.json").write_text(json.dumps(effects(**sites)))

    return _set


def _resign(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    from polyaudit.report.document import dumps
    from polyaudit.report.load import sign

    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(dumps(sign(doc)))


@pytest.fixture
def resign() -> Callable[[Path, Callable[[dict[str, Any]], None]], None]:
    """Edit a stored report and re-sign it (a legitimately different baseline, not tampering)."""
    return _resign
