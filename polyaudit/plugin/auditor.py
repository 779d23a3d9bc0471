"""The per-test `audit` handle: profile, seeded generators, the run memo, `measure` (a claim's
evidence, computed once per run, adjusted for multiple comparisons as its spec declares, cached on
disk) and `conclude`, which turns Evidence into a verdict, records the report row and sets the
pytest outcome."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pytest

from polyaudit.plugin.marker import ClaimMarker, claim_of
from polyaudit.plugin.state import ROW_KEY, ClaimError, ClaimFailed, ClaimInconclusive
from polyaudit.profiles import Profile
from polyaudit.report.rows import make_row
from polyaudit.verdict import Evidence, Status, Verdict, decide

T = TypeVar("T")


def _test_id(item: pytest.Item, claim: ClaimMarker | None, model_id: str, site: str) -> str:
    if claim is None:
        return item.nodeid
    return f"{claim.spec.id}-{claim.check.name}[{model_id}:{site}]"


def _provenance(subject: Any, probe_spec: str | None) -> dict[str, Any]:
    prov: dict[str, Any] = {"model": subject.model_info()}
    try:
        prov["probe"] = subject.probe(probe_spec).describe()
    except Exception as e:  # provenance must never cost the row: the probe's problem is recorded instead
        prov["probe"] = {"name": str(probe_spec), "error": f"{type(e).__name__}: {e}"}
    return prov


class Auditor:
    def __init__(self, item: pytest.Item, runtime: Any) -> None:
        self.item = item
        self.runtime = runtime
        self.claim = claim_of(item)

    @property
    def profile(self) -> Profile:
        return self.runtime.options.profile

    @property
    def seed(self) -> int:
        return int(self.runtime.options.seed)

    @property
    def correction(self) -> str:
        """Multiple-comparison adjustment across a claim's rows: "holm" (default) or "bh"."""
        return str(getattr(self.runtime.options, "correction", "holm"))

    def rng(self, *keys: object) -> np.random.Generator:
        return self.runtime.rng(*keys)

    def memo(self, key: Any, compute: Callable[[], T]) -> T:
        return self.runtime.memo(key, compute)

    def measure(self, subject: Any, compute: Callable[[], dict[str, Evidence]], probe: str | None = None) -> dict[str, Evidence]:
        """The claim's evidence by site for this model: computed once per run (shared by the
        claim's test ids), adjusted as the claim's spec declares, and cached on disk for warm reruns."""
        if self.claim is None:
            raise RuntimeError("audit.measure needs a @pytest.mark.claim(SPEC, check=...) marker on the test")
        return self.runtime.measure(subject, self.claim.spec, probe if probe is not None else self.claim.check.probe,
                                    compute, code_files=(str(self.item.path),))

    def conclude(self, evidence: Evidence, subject: Any, probe: str | None = None) -> Verdict:
        """Record the row and set the outcome: PASS returns; FAIL/INCONCLUSIVE/ERROR raise the
        plugin's outcome exceptions; SKIPPED skips with the reason."""
        if probe is None and self.claim is not None:
            probe = self.claim.check.probe
        verdict = decide(evidence, self.profile.alpha)
        row = make_row(evidence, verdict, test_id=_test_id(self.item, self.claim, subject.id, evidence.site),
                       nodeid=self.item.nodeid, model=subject.id, provenance=_provenance(subject, probe))
        self.item.user_properties.append((ROW_KEY, json.dumps(row, sort_keys=True)))
        if verdict.status is Status.PASS:
            return verdict
        if verdict.status is Status.SKIPPED:
            pytest.skip(verdict.reason)
        if verdict.status is Status.FAIL:
            raise ClaimFailed(f"{verdict.reason} (a finding about the model, not a bug)")
        if verdict.status is Status.INCONCLUSIVE:
            raise ClaimInconclusive(verdict.reason)
        raise ClaimError(verdict.reason)


def _subject_of(item: pytest.Item, runtime: Any) -> Any:
    """What a claim test was auditing: its `subject` or `dropout_family` fixture value, else the
    model its parametrization names; None when there is none."""
    funcargs = getattr(item, "funcargs", {}) or {}
    for name in ("subject", "dropout_family"):
        if funcargs.get(name) is not None:
            return funcargs[name]
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "subject" in callspec.params:
        return runtime.subject(callspec.params["subject"])
    return None


def error_row(item: pytest.Item, runtime: Any, message: str, traceback: str | None = None) -> dict[str, Any] | None:
    """The ERROR row for a claim test that raised instead of concluding (`traceback` goes to its
    details)."""
    claim = claim_of(item)
    subject = _subject_of(item, runtime)
    if claim is None or subject is None:
        return None
    params = getattr(getattr(item, "callspec", None), "params", {})
    # rows of one claim differ by site, or by their other parameters (C2's path, C1's layer/baseline)
    others = [str(v) for k, v in params.items() if k not in ("subject", "dropout_family")]
    site = str(params["site"]) if "site" in params else ("/".join(others) or "-")
    ev = claim.spec.failed(site, message, stat=claim.check.statistic,
                           details={"traceback": traceback} if traceback else None)
    verdict = decide(ev)
    return make_row(ev, verdict, test_id=_test_id(item, claim, subject.id, site), nodeid=item.nodeid,
                    model=subject.id, provenance=_provenance(subject, claim.check.probe))
