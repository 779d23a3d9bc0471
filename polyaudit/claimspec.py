"""A claim, declared once: `ClaimSpec`.

Each claim's analysis module (`polyaudit/analyses/cN.py`) declares one frozen `ClaimSpec`: its id,
version, title and source, the statistics its rows report (what the effect is, the predicted
direction, units, the smallest effect of interest), the checks its claim file runs (test name,
site kinds captured, probe, minimum samples), the plots the HTML report draws from its rows and the
`details` keys each plot reads, the modules whose code computes it, and how its rows are adjusted
for multiple comparisons. Everything else derives from the spec:

- the pytest marker: `@pytest.mark.claim(SPEC, check="alpha-depth")` (parsed in one place,
  `polyaudit.plugin.marker`);
- the Evidence builders: `SPEC.evidence(...)`, `SPEC.failed(...)`, `SPEC.skipped(...)` fill in the
  claim, version, statistic, predicted direction and smallest effect of interest;
- `polyaudit list`, the report's plot dispatch (`polyaudit.report.plots`), and the results-cache key
  (spec id, version and a hash of the code of `modules`, see `polyaudit.store.results`);
- the multiple-comparison adjustment the framework applies to a measurement (`SPEC.adjust`).

`docs/new_claim.md` lists every file a new claim touches.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.stats import norm as _norm
from scipy.stats import t as _student_t

from polyaudit.errors import PolyauditError
from polyaudit.stats import Interval, adjust, bootstrap_p_value, percentile_ci
from polyaudit.verdict import Evidence, Prediction, decide


@dataclass(frozen=True)
class Statistic:
    """What a row's `effect` is."""

    key: str  # short name the analysis refers to ("track", "contrast", ...)
    text: str  # the statistic as the report shows it
    predicted: Prediction = "positive"
    units: str = ""
    min_effect: float | None = None  # smallest effect of interest, in the predicted direction


@dataclass(frozen=True)
class Check:
    """One test function of the claim file (one marker): its name in test ids, the statistic its
    rows report, and what it needs from a model."""

    name: str
    statistic: str  # key of the statistic (rows may report others, see `SPEC.statistics`)
    sites: tuple[str, ...] = ()  # site kinds captured for it, in the run's one forward pass
    probe: str | None = None  # probe spec it reads; None: the model's own / default probe
    min_samples: int = 0
    first_site_only: bool = False  # a family check measured once per family, at its first layer


@dataclass(frozen=True)
class PlotSpec:
    """A plot of the HTML report: drawn by `polyaudit.report.plots.PLOTTERS[name]` from the rows'
    `details`, of which it reads `reads`."""

    name: str
    reads: tuple[str, ...]


@dataclass(frozen=True)
class ClaimSpec:
    id: str  # "C1".."C6"
    version: int  # bumped whenever the definition changes (docs/claims.md says what changed)
    title: str
    source: str  # paper, prediction and section
    statistics: tuple[Statistic, ...]
    checks: tuple[Check, ...]
    plots: tuple[PlotSpec, ...] = ()
    modules: tuple[str, ...] = ()  # modules whose code computes it: hashed into the results-cache key
    adjust_within: Literal["claim", "statistic"] = "claim"  # which rows share a multiplicity adjustment
    notes: Mapping[str, Any] = field(default_factory=dict)

    # --- lookups -------------------------------------------------------------------------------
    def statistic(self, key: str | None = None) -> Statistic:
        """The statistic `key` (None: the first one declared)."""
        if key is None:
            return self.statistics[0]
        for s in self.statistics:
            if s.key == key:
                return s
        raise KeyError(f"{self.id} declares no statistic {key!r}: it has {', '.join(s.key for s in self.statistics)}")

    def check(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"{self.id} declares no check {name!r}: it has {', '.join(c.name for c in self.checks)}")

    # --- Evidence builders ------------------------------------------------------------------------
    def evidence(self, site: str, *, effect: float, ci: tuple[float, float], p: float, n: int,
                 stat: str | None = None, notes: str = "", details: Mapping[str, Any] | None = None,
                 interval: Interval | None = None, caveat: str | None = None,
                 replicates: np.ndarray | None = None) -> Evidence:
        """A measured row. `interval`: the CI at any level (from the replicates or the distribution
        that gave `ci` and, ideally, `p`), so the adjustment can show the simultaneous interval;
        `caveat`: why the row may not PASS whatever its numbers."""
        s = self.statistic(stat)
        return Evidence(claim=self.id, claim_version=self.version, site=site, statistic=s.text,
                        effect=float(effect), ci=(float(ci[0]), float(ci[1])), p=float(p), n=int(n),
                        predicted=s.predicted, min_effect=s.min_effect, notes=notes,
                        details=dict(details or {}), interval=interval, caveat=caveat,
                        replicates=None if replicates is None else np.asarray(replicates, dtype=np.float64))

    def failed(self, site: str, reason: str, *, stat: str | None = None, n: int = 0,
               details: Mapping[str, Any] | None = None) -> Evidence:
        """A row whose measurement could not be made (ERROR), with the reason."""
        s = self.statistic(stat)
        nan = float("nan")
        return Evidence(self.id, self.version, site, s.text, nan, (nan, nan), nan, n, predicted=s.predicted,
                        min_effect=s.min_effect, error=reason, details=dict(details or {}))

    def undetermined(self, site: str, reason: str, *, stat: str | None = None, n: int = 0,
                     details: Mapping[str, Any] | None = None) -> Evidence:
        """A row that was measured but gives no effect to decide on (INCONCLUSIVE), with the reason:
        e.g. a statistic undefined on this model's numbers. Not an error: nothing went wrong."""
        s = self.statistic(stat)
        nan = float("nan")
        return Evidence(self.id, self.version, site, s.text, nan, (nan, nan), nan, n, predicted=s.predicted,
                        min_effect=s.min_effect, caveat=reason, details=dict(details or {}))

    def skipped(self, site: str, reason: str, *, stat: str | None = None) -> Evidence:
        """A row of a claim that does not apply to this model (SKIPPED), with the reason."""
        s = self.statistic(stat)
        nan = float("nan")
        return Evidence(self.id, self.version, site, s.text, nan, (nan, nan), nan, 0, predicted=s.predicted,
                        min_effect=s.min_effect, skip=reason)

    # --- the framework's adjustment -----------------------------------------------------------
    def adjust(self, evidence: Mapping[str, Evidence], method: str = "holm", alpha: float = 0.05) -> dict[str, Evidence]:
        """The multiple-comparison adjustment of one measurement's rows, across all of them or
        within each statistic (`adjust_within`): adjusted p-values and, for every row that can say
        its CI at any level, the interval at the level the adjustment implies (`adjust_evidence`)."""
        if self.adjust_within == "claim":
            return adjust_evidence(evidence, method, alpha)
        groups: dict[str, dict[str, Evidence]] = {}
        for k, ev in evidence.items():
            groups.setdefault(ev.statistic, {})[k] = ev
        adjusted: dict[str, Evidence] = {}
        for rows in groups.values():
            adjusted.update(adjust_evidence(rows, method, alpha))
        return {k: adjusted[k] for k in evidence}


def simultaneous_levels(p_adj: np.ndarray, p: np.ndarray, method: str, alpha: float) -> np.ndarray:
    """The confidence level of each row's interval under the adjustment, chosen so that the interval
    excludes 0 exactly when the adjusted p is below alpha (for a row whose p and interval come from
    the same distribution):

    - holm: the row of rank r (by p) is tested at alpha / (m - r + 1) while every more significant
      row is rejected, so its interval is at 1 - alpha / (m - r + 1); from the first row not rejected
      on, every row keeps that step's level (the step-down stops there);
    - bh: the R rejected rows get 1 - R alpha / m (the false-coverage-rate intervals of Benjamini &
      Yekutieli 2005), the others 1 - (R + 1) alpha / m.
    """
    m = p.size
    out = np.empty(m)
    if method == "holm":
        order = np.argsort(p, kind="stable")
        level = 1.0 - alpha / m
        stopped = False
        for r, i in enumerate(order, start=1):
            if not stopped:
                level = 1.0 - alpha / (m - r + 1)
                stopped = not p_adj[i] < alpha
            out[i] = level
        return out
    rejected = p_adj < alpha
    r = int(rejected.sum())
    out[rejected] = 1.0 - r * alpha / m
    out[~rejected] = 1.0 - min(r + 1, m) * alpha / m
    return out


def adjust_evidence(evidence: Mapping[str, Evidence], method: str = "holm", alpha: float = 0.05) -> dict[str, Evidence]:
    """Multiple-comparison adjustment across rows: `method` "holm" (the default, family-wise error) or
    "bh" (Benjamini-Hochberg, false discovery rate), the run's --correction. Rows with a finite p get
    `p_adj`, which is what `verdict.decide` uses, and, when they carry an `interval`, the CI at the
    level the adjustment implies (`simultaneous_levels`; the unadjusted 95% CI and the level go to
    `details`). ERROR/SKIPPED rows are left as they are."""
    keys = [k for k, ev in evidence.items() if ev.error is None and ev.skip is None and math.isfinite(ev.p)]
    out = dict(evidence)
    if not keys:
        return out
    p = np.array([evidence[k].p for k in keys])
    adj = adjust(p, method=method)
    levels = simultaneous_levels(adj, p, method, alpha)
    for k, pa, level in zip(keys, adj, levels, strict=True):
        ev = evidence[k]
        changes: dict[str, Any] = {"p_adj": float(pa)}
        if ev.interval is not None:
            lo, hi = ev.interval(float(level))
            changes["ci"] = (float(lo), float(hi))
            changes["details"] = {**ev.details, "ci_95": [float(ev.ci[0]), float(ev.ci[1])],
                                  "ci_level": float(level)}
        out[k] = dataclasses.replace(ev, **changes)
    return out


def _measured(ev: Evidence | None) -> bool:
    return ev is not None and ev.error is None and ev.skip is None and all(
        math.isfinite(x) for x in (ev.effect, *ev.ci))


def _ci95(ev: Evidence) -> tuple[float, float]:
    ci = ev.details.get("ci_95", ev.ci) if isinstance(ev.details, Mapping) else ev.ci
    return float(ci[0]), float(ci[1])


def versus(ev: Evidence, twin: Evidence) -> dict[str, Any] | None:
    """effect - twin effect with a 95% CI and a two-sided p: paired replicate by replicate when both
    rows carry replicates of the same resamples, else from the two intervals (normal approximation,
    as if independent: conservative when they are positively correlated)."""
    if not (_measured(ev) and _measured(twin)):
        return None
    diff = ev.effect - twin.effect
    a, b = ev.replicates, twin.replicates
    units = [r.details.get("boot_units") if isinstance(r.details, Mapping) else None for r in (ev, twin)]
    same_units = units[0] == units[1]  # resamples of the same units (None: the claim's units never vary)
    if a is not None and b is not None and same_units and np.shape(a) == np.shape(b) and np.size(a) >= 1000:
        d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
        try:
            lo, hi = percentile_ci(d)
            return {"effect": diff, "ci": [lo, hi], "p": bootstrap_p_value(d), "paired": True,
                    "method": f"paired bootstrap ({d.size} resamples)"}
        except PolyauditError:
            pass
    (lo1, hi1), (lo2, hi2) = _ci95(ev), _ci95(twin)
    z = float(_norm.ppf(0.975))
    se = float(np.hypot((hi1 - lo1) / (2 * z), (hi2 - lo2) / (2 * z)))
    if se == 0:
        return {"effect": diff, "ci": [diff, diff], "p": 1.0 if diff == 0 else 0.0, "paired": False,
                "method": "exact (both intervals degenerate)"}
    return {"effect": diff, "ci": [diff - z * se, diff + z * se], "p": float(2 * _norm.sf(abs(diff) / se)),
            "paired": False, "method": "normal approximation from the two 95% intervals"}


def versus_twins(ev: Evidence, twins: Sequence[Evidence]) -> dict[str, Any] | None:
    """effect - the twins' mean effect, with a 95% interval that holds the spread between untrained
    draws: the prediction interval of one more untrained draw, mean +- t(k-1) s sqrt(1 + 1/k), where s
    is the standard deviation of the k twins' effects (each with its own sampling noise). With one
    twin (or twins that agree exactly) the spread cannot be measured and the comparison is `versus`
    (the sampling noise only), which says so."""
    measured = [t for t in twins if _measured(t)]
    if not _measured(ev) or not measured:
        return None
    effects = np.array([t.effect for t in measured], dtype=np.float64)
    k = effects.size
    s = float(effects.std(ddof=1)) if k > 1 else 0.0
    if k == 1 or s == 0:
        one = versus(ev, measured[0])
        if one is not None:
            one["method"] += (" against one untrained twin: the spread between untrained draws is not measured"
                              if k == 1 else f"; the {k} twins' effects are identical")
            one["n_twins"] = k
        return one
    diff = float(ev.effect - effects.mean())
    scale = s * float(np.sqrt(1 + 1 / k))
    half = float(_student_t.ppf(0.975, k - 1)) * scale
    return {"effect": diff, "ci": [diff - half, diff + half], "p": float(2 * _student_t.sf(abs(diff) / scale, k - 1)),
            "paired": False, "n_twins": k,
            "method": f"prediction interval of one more untrained draw from {k} twins (t with {k - 1} df, "
                      f"twins' SD {s:.3g})"}


def attach_control(rows: Mapping[str, Evidence], twins: Sequence[Mapping[str, Evidence]],
                   kind: str, describe: Mapping[str, Any] | None = None, alpha: float = 0.05) -> dict[str, Evidence]:
    """Each row with the same row measured on its control twins (`control`: the twins' mean effect,
    each twin's effect and verdict, the first twin's CI) and the difference (`vs_control`,
    `versus_twins`); rows the twins lack are left as they are."""
    out = dict(rows)
    for key, ev in rows.items():
        mine = [t[key] for t in twins if key in t]
        if not mine or ev.error is not None or ev.skip is not None:
            continue
        verdicts = [decide(t, alpha) for t in mine]
        statuses = [v.status.value for v in verdicts]
        common = max(dict.fromkeys(statuses), key=statuses.count)  # the twins' most common verdict (first on ties)
        first = mine[0]
        effects = [t.effect for t in mine if _measured(t)]
        effect = float(np.mean(effects)) if effects else first.effect
        control = {"kind": kind, "effect": effect, "ci": list(first.ci), "p_adj": first.p_adj,
                   "verdict": common, "reason": verdicts[statuses.index(common)].reason,
                   "n_twins": len(mine), "effects": [t.effect for t in mine], "verdicts": statuses,
                   **dict(describe or {})}
        out[key] = dataclasses.replace(ev, control=control, vs_control=versus_twins(ev, mine))
    return out
