"""Helpers shared by claim analyses."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from polyaudit.verdict import Evidence


def adjust_evidence(evidence: Mapping[str, Evidence], method: str = "holm") -> dict[str, Evidence]:
    """Multiple-comparison adjustment across a claim's rows: `method` "holm" (the default,
    family-wise error) or "bh" (Benjamini-Hochberg, false discovery rate), the run's --correction.
    Rows with a finite p get `p_adj`, which is what `verdict.decide` uses; ERROR/SKIPPED rows are
    left as they are."""
    from polyaudit.stats import adjust

    keys = [k for k, ev in evidence.items() if ev.error is None and ev.skip is None and math.isfinite(ev.p)]
    out = dict(evidence)
    if keys:
        adj = adjust(np.array([evidence[k].p for k in keys]), method=method)
        for k, pa in zip(keys, adj, strict=True):
            out[k] = dataclasses.replace(evidence[k], p_adj=float(pa))
    return out
