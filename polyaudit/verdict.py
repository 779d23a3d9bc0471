"""Evidence -> Verdict.

A claim measures an effect with a 95% CI and a p-value (raw and adjusted across the claim's rows)
and hands an `Evidence` to `decide`:

- PASS: the effect has the predicted sign, its CI excludes 0 and the adjusted p is below alpha.
- FAIL: the CI excludes 0 with the opposite sign (and the adjusted p is below alpha), or a declared
  minimum effect is clearly missed (the whole CI lies inside the band where the effect is too small
  to count; checked before PASS: significant but negligible is not a pass).
- INCONCLUSIVE: the CI straddles 0 (too few samples, or no effect).
- ERROR: the measurement could not be made (degenerate fit, NaN): never reported as FAIL.
- SKIPPED: the claim does not apply to this model (reason given).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

Prediction = Literal["positive", "negative", "nonzero"]


class Status(str, Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"
    ERROR = "ERROR"
    SKIPPED = "SKIPPED"


@dataclass(frozen=True)
class Evidence:
    """What a claim measured on one model x site (one report row)."""

    claim: str  # "C1".."C6"
    claim_version: int
    site: str  # "resid", "mlp_pre", "blocks.3.mlp.pre", ...
    statistic: str  # what `effect` is, e.g. "spearman(alpha, layer)"
    effect: float
    ci: tuple[float, float]
    p: float
    n: int
    predicted: Prediction = "positive"
    p_adj: float | None = None  # adjusted across the claim's rows/layers; None -> same as p
    min_effect: float | None = None  # declared minimum |effect| (in the predicted direction)
    notes: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None  # measurement failed: the reason (-> ERROR)
    skip: str | None = None  # claim does not apply: the reason (-> SKIPPED)

    @staticmethod
    def failed(claim: str, version: int, site: str, statistic: str, reason: str,
               n: int = 0, details: Mapping[str, Any] | None = None) -> Evidence:
        nan = float("nan")
        return Evidence(claim, version, site, statistic, nan, (nan, nan), nan, n,
                        error=reason, details=dict(details or {}))

    @staticmethod
    def skipped(claim: str, version: int, site: str, statistic: str, reason: str) -> Evidence:
        nan = float("nan")
        return Evidence(claim, version, site, statistic, nan, (nan, nan), nan, 0, skip=reason)


@dataclass(frozen=True)
class Verdict:
    status: Status
    reason: str


def _finite(*xs: Any) -> bool:
    """True when every value is a finite real number (numpy scalars included)."""
    try:
        return all(math.isfinite(float(x)) for x in xs)
    except (TypeError, ValueError):
        return False


def decide(ev: Evidence, alpha: float = 0.05) -> Verdict:
    """Turn evidence into a verdict; the CI and the adjusted p-value are both honoured."""
    if ev.skip:
        return Verdict(Status.SKIPPED, ev.skip)
    if ev.error:
        return Verdict(Status.ERROR, ev.error)
    lo, hi = ev.ci
    p_adj = ev.p if ev.p_adj is None else ev.p_adj
    if not _finite(ev.effect, lo, hi, p_adj):
        return Verdict(Status.ERROR, "effect, CI or p-value is not a finite number")
    if lo > hi:
        return Verdict(Status.ERROR, f"CI is inverted: [{lo:.4g}, {hi:.4g}]")
    significant = p_adj < alpha
    ci_txt = f"[{lo:.3g}, {hi:.3g}]"
    m = ev.min_effect
    if ev.predicted == "nonzero":
        # a declared minimum effect is checked first: significant but negligible is not a pass
        if m is not None and -m < lo and hi < m:
            return Verdict(Status.FAIL, f"CI {ci_txt} lies inside the no-effect band (-{m:g}, {m:g})")
        if significant and (lo > 0 or hi < 0):
            return Verdict(Status.PASS, f"effect {ev.effect:.3g}, CI {ci_txt} excludes 0, p_adj={p_adj:.3g}")
        return Verdict(Status.INCONCLUSIVE, f"CI {ci_txt} includes 0 or p_adj={p_adj:.3g} >= {alpha:g}")
    sign = 1.0 if ev.predicted == "positive" else -1.0
    s_lo, s_hi = sorted((sign * lo, sign * hi))  # CI in the predicted direction
    if significant and s_hi < 0:
        return Verdict(Status.FAIL, f"CI {ci_txt} excludes 0 with the opposite sign to the prediction ({ev.predicted})")
    if m is not None and s_hi < m:
        return Verdict(Status.FAIL, f"CI {ci_txt} excludes the declared minimum effect {sign * m:g}")
    if significant and s_lo > 0:
        return Verdict(Status.PASS, f"effect {ev.effect:.3g} has the predicted sign, CI {ci_txt} excludes 0, p_adj={p_adj:.3g}")
    return Verdict(Status.INCONCLUSIVE, f"CI {ci_txt} includes 0 or p_adj={p_adj:.3g} >= {alpha:g}")


def evidence_to_dict(ev: Evidence) -> dict[str, Any]:
    """JSON-ready form of Evidence (non-finite floats become None)."""
    from polyaudit.serial import jsonable

    d = {f: getattr(ev, f) for f in Evidence.__dataclass_fields__}
    d["ci"] = list(ev.ci)
    d["details"] = dict(ev.details)
    return jsonable(d)


def evidence_from_dict(d: Mapping[str, Any]) -> Evidence:
    """Inverse of evidence_to_dict (None -> NaN for the numeric fields)."""

    def num(x: Any) -> float:
        return float("nan") if x is None else float(x)

    lo, hi = d.get("ci") or (None, None)
    return Evidence(
        claim=str(d["claim"]), claim_version=int(d["claim_version"]), site=str(d["site"]),
        statistic=str(d["statistic"]), effect=num(d.get("effect")), ci=(num(lo), num(hi)),
        p=num(d.get("p")), n=int(d.get("n") or 0), predicted=d.get("predicted", "positive"),
        p_adj=None if d.get("p_adj") is None else float(d["p_adj"]),
        min_effect=None if d.get("min_effect") is None else float(d["min_effect"]),
        notes=str(d.get("notes") or ""), details=dict(d.get("details") or {}),
        error=d.get("error"), skip=d.get("skip"),
    )
