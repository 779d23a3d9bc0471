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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from polyaudit.stats import adjust
from polyaudit.verdict import Evidence, Prediction


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
                 stat: str | None = None, notes: str = "", details: Mapping[str, Any] | None = None) -> Evidence:
        s = self.statistic(stat)
        return Evidence(claim=self.id, claim_version=self.version, site=site, statistic=s.text,
                        effect=float(effect), ci=(float(ci[0]), float(ci[1])), p=float(p), n=int(n),
                        predicted=s.predicted, min_effect=s.min_effect, notes=notes,
                        details=dict(details or {}))

    def failed(self, site: str, reason: str, *, stat: str | None = None, n: int = 0,
               details: Mapping[str, Any] | None = None) -> Evidence:
        """A row whose measurement could not be made (ERROR), with the reason."""
        s = self.statistic(stat)
        nan = float("nan")
        return Evidence(self.id, self.version, site, s.text, nan, (nan, nan), nan, n, predicted=s.predicted,
                        min_effect=s.min_effect, error=reason, details=dict(details or {}))

    def skipped(self, site: str, reason: str, *, stat: str | None = None) -> Evidence:
        """A row of a claim that does not apply to this model (SKIPPED), with the reason."""
        s = self.statistic(stat)
        nan = float("nan")
        return Evidence(self.id, self.version, site, s.text, nan, (nan, nan), nan, 0, predicted=s.predicted,
                        min_effect=s.min_effect, skip=reason)

    # --- the framework's adjustment -----------------------------------------------------------
    def adjust(self, evidence: Mapping[str, Evidence], method: str = "holm") -> dict[str, Evidence]:
        """The multiple-comparison adjustment of one measurement's rows: across all of them, or
        within each statistic (`adjust_within`)."""
        if self.adjust_within == "claim":
            return adjust_evidence(evidence, method)
        groups: dict[str, dict[str, Evidence]] = {}
        for k, ev in evidence.items():
            groups.setdefault(ev.statistic, {})[k] = ev
        adjusted: dict[str, Evidence] = {}
        for rows in groups.values():
            adjusted.update(adjust_evidence(rows, method))
        return {k: adjusted[k] for k in evidence}


def adjust_evidence(evidence: Mapping[str, Evidence], method: str = "holm") -> dict[str, Evidence]:
    """Multiple-comparison adjustment across rows: `method` "holm" (the default, family-wise error) or
    "bh" (Benjamini-Hochberg, false discovery rate), the run's --correction. Rows with a finite p get
    `p_adj`, which is what `verdict.decide` uses; ERROR/SKIPPED rows are left as they are."""
    keys = [k for k, ev in evidence.items() if ev.error is None and ev.skip is None and math.isfinite(ev.p)]
    out = dict(evidence)
    if keys:
        adj = adjust(np.array([evidence[k].p for k in keys]), method=method)
        for k, pa in zip(keys, adj, strict=True):
            out[k] = dataclasses.replace(evidence[k], p_adj=float(pa))
    return out
