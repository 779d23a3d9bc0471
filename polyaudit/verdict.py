"""Evidence -> Verdict.

A claim measures an effect with a CI and a p-value (raw and adjusted across the claim's rows) and
hands an `Evidence` to `decide`. The CI shown is the one the adjusted p decides with: the
framework (`ClaimSpec.adjust`) recomputes it at the level the multiplicity adjustment implies
(`Evidence.interval`), so a row never shows a CI that contradicts its verdict.

- PASS: the effect has the predicted sign and is at least the claim's smallest effect of interest,
  its (adjusted) CI excludes 0, its adjusted p is below alpha, and nothing blocks it (`caveat`).
- FAIL: the CI excludes 0 with the opposite sign and the adjusted p is below alpha, or the whole CI
  lies below the smallest effect of interest (the effect, if there is one, is negligible).
- INCONCLUSIVE: neither; the reason names the condition that failed (significant but negligible,
  CI includes 0, p_adj not below alpha, a caveat).
- ERROR: the measurement could not be made (NaN, a crash): never reported as FAIL.
- SKIPPED: the claim does not apply to this model (reason given).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

import numpy as np

from polyaudit.serial import jsonable

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
    caveat: str | None = None  # why this row may not PASS whatever its numbers (-> INCONCLUSIVE)
    # the CI at any confidence level (from the same replicates or distribution as `ci`): the
    # framework's adjustment asks it for the simultaneous interval; in memory only, never serialised
    interval: Callable[[float], tuple[float, float]] | None = field(default=None, compare=False, repr=False)
    # bootstrap replicates of `effect`, one per resample of the claim's seeded draws (so two models
    # measured on the same probe pair replicate by replicate); in memory only
    replicates: np.ndarray | None = field(default=None, compare=False, repr=False)
    control: Mapping[str, Any] | None = None  # the same row on the control twin: kind, effect, ci, verdict, ...
    vs_control: Mapping[str, Any] | None = None  # effect - control effect: effect, ci, p

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


def _fmt_ci(lo: float, hi: float) -> str:
    return f"[{lo:.3g}, {hi:.3g}]"


def decide(ev: Evidence, alpha: float = 0.05) -> Verdict:
    """Turn evidence into a verdict; the CI, the adjusted p-value and the smallest effect of
    interest are all honoured (see the module docstring)."""
    if ev.skip:
        return Verdict(Status.SKIPPED, ev.skip)
    if ev.error:
        return Verdict(Status.ERROR, ev.error)
    lo, hi = ev.ci
    p_adj = ev.p if ev.p_adj is None else ev.p_adj
    if not _finite(ev.effect, lo, hi, p_adj) and ev.caveat:  # measured, but nothing to decide on
        return Verdict(Status.INCONCLUSIVE, f"no effect can be estimated: {ev.caveat}")
    if not _finite(ev.effect, lo, hi, p_adj):
        return Verdict(Status.ERROR, "effect, CI or p-value is not a finite number")
    if lo > hi:
        return Verdict(Status.ERROR, f"CI is inverted: [{lo:.4g}, {hi:.4g}]")
    m = float(ev.min_effect or 0.0)
    ci = _fmt_ci(lo, hi)
    level = ev.details.get("ci_level") if isinstance(ev.details, Mapping) else None
    ci_txt = f"CI {ci}" if not isinstance(level, float) or level == 0.95 else f"{level:.2%} CI {ci}"
    significant = p_adj < alpha
    if ev.predicted == "nonzero":
        sign = 1.0 if ev.effect >= 0 else -1.0
    else:
        sign = 1.0 if ev.predicted == "positive" else -1.0
    s_lo, s_hi = sorted((sign * lo, sign * hi))  # the CI in the predicted direction
    excludes_zero = s_lo > 0
    if ev.predicted != "nonzero" and significant and s_hi < 0:
        return Verdict(Status.FAIL, f"{ci_txt} excludes 0 with the opposite sign to the prediction "
                                    f"({ev.predicted}), p_adj={p_adj:.3g}")
    if m > 0 and s_hi < m and (ev.predicted != "nonzero" or -m < lo):
        what = "significant but negligible: " if excludes_zero and significant else ""
        return Verdict(Status.FAIL, f"{what}{ci_txt} lies inside the no-effect band: below the smallest effect "
                                    f"of interest {m:g}")
    beyond = sign * ev.effect >= m
    if excludes_zero and significant and beyond and not ev.caveat:
        return Verdict(Status.PASS, f"effect {ev.effect:.3g} has the predicted sign and is at least {m:g}, "
                                    f"{ci_txt} excludes 0, p_adj={p_adj:.3g}")
    if excludes_zero and significant and not beyond:
        return Verdict(Status.INCONCLUSIVE, f"significant but negligible: effect {ev.effect:.3g} is below the "
                                            f"smallest effect of interest {m:g} ({ci_txt}, p_adj={p_adj:.3g})")
    if excludes_zero and significant:
        return Verdict(Status.INCONCLUSIVE, f"would pass ({ci_txt}, p_adj={p_adj:.3g}) but {ev.caveat}")
    if excludes_zero:
        return Verdict(Status.INCONCLUSIVE, f"{ci_txt} excludes 0 but p_adj={p_adj:.3g} is not below {alpha:g}")
    if significant:
        return Verdict(Status.INCONCLUSIVE, f"p_adj={p_adj:.3g} is below {alpha:g} but the {ci_txt} includes 0")
    return Verdict(Status.INCONCLUSIVE, f"{ci_txt} includes 0 and p_adj={p_adj:.3g} is not below {alpha:g} "
                                        "(no effect, or too few samples to tell)")


def evidence_to_dict(ev: Evidence) -> dict[str, Any]:
    """JSON-ready form of Evidence (non-finite floats become None)."""
    d = {f: getattr(ev, f) for f in Evidence.__dataclass_fields__ if f not in ("interval", "replicates")}
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
        error=d.get("error"), skip=d.get("skip"), caveat=d.get("caveat"),
        control=d.get("control"), vs_control=d.get("vs_control"),
    )


Origin = Literal["learned", "architectural", "absent"]


def origin(ev: Evidence, verdict: Verdict) -> tuple[Origin, str] | None:
    """Whether a row's effect comes from training, measured against the control twin:

    - learned: the model passes and exceeds its twin (the difference's CI excludes 0 in the
      predicted direction), or passes where the twin has no effect to estimate at all;
    - architectural: the model passes and the twin is not told apart from it (the difference's CI
      includes 0: the twin shows it too);
    - absent: the model does not show it (whether or not its twin does: if only the twin does,
      training removed it, and the reason says so).
    None without a control, or for a row that was not measured."""
    if ev.control is None or verdict.status not in (Status.PASS, Status.FAIL, Status.INCONCLUSIVE):
        return None
    twin = str(ev.control.get("verdict"))
    kind = ev.control.get("kind", "control")
    if twin not in ("PASS", "FAIL", "INCONCLUSIVE"):
        return None  # the twin could not be measured: its reason is in `control`
    vs = ev.vs_control or {}
    lo, hi = (vs.get("ci") or (float("nan"), float("nan")))
    sign = 1.0 if ev.predicted != "negative" and not (ev.predicted == "nonzero" and ev.effect < 0) else -1.0
    exceeds = _finite(lo, hi) and min(sign * lo, sign * hi) > 0
    if verdict.status is Status.PASS and exceeds:
        return "learned", f"learned: the model exceeds its {kind} twin by {vs.get('effect', float('nan')):.3g}"
    twin_effect = ev.control.get("effect")
    if verdict.status is Status.PASS and not _finite(lo, hi) and (twin_effect is None or not _finite(twin_effect)):
        return "learned", f"learned: its {kind} twin has no effect to estimate ({twin} twin)"
    if verdict.status is Status.PASS:
        return "architectural", f"architectural: the {kind} twin shows it too (twin {twin}, difference CI includes 0)"
    if twin == "PASS":
        return "absent", f"absent: the model does not show it, its {kind} twin does (training removed it)"
    return "absent", f"absent: neither the model nor its {kind} twin shows it"
