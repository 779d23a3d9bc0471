"""Helpers shared by the coding-theory analyses (C4, C5, C6).

- The run's shared eigendecomposition of a site (`decomposition_of`).
- The effective number of independent samples behind a spectrum (`design_effect`,
  `effective_samples`, `effective_n`): rows that come in groups (the tokens of one sequence, the
  positions of one image) are worth fewer independent rows, and the fit range of a power law is
  set by what the independent samples resolve (`default_ranks` of n / design effect), not by the
  count of rows.
- One rank range for the power-law fits that are compared with each other (the layers of a model,
  the models of a family at one layer), inside what the lowest-rank spectrum resolves, so alpha
  means the same thing in C4, C5 and C6. Unlike C4, a layer that resolves too few eigenvalues for
  any fit (a 16-unit bottleneck) is left out and listed instead of failing all (`layer_alphas`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from polyaudit.errors import PolyauditError
from polyaudit.measures.spectrum import (
    decompose,
    default_ranks,
    effective_dims,
    fit_power_law,
    participation_ratio,
)


def decomposition_of(data: Any) -> tuple[np.ndarray, np.ndarray]:
    """`decompose(data.samples)`, from the capture's per-run memo when `data` is a SiteData."""
    if isinstance(getattr(type(data), "decomposition", None), functools.cached_property):
        return data.decomposition
    return decompose(data.samples)


def design_effect(scores: np.ndarray, groups: np.ndarray | None, k: int = 10) -> float:
    """How many rows one independent unit is worth to a spectrum, when rows come in groups (tokens
    of one sequence, positions of one image). Eigenvalue j is the mean of u_j = s_j^2 over rows
    (s_j: the row's score on principal axis j); for each of the top `k` axes, the variance of that
    mean under sampling whole groups over its variance under independent rows,
    sum_g (sum_{i in g} (u_ij - mean_j))^2 / sum_i (u_ij - mean_j)^2 (the cluster-robust variance
    ratio, 1 + (m - 1) ICC for groups of m rows); the median over the k axes, at least 1. Exactly 1
    when every group is one row (or `groups` is None)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] < 2:
        raise PolyauditError(f"scores must be [n, m] with n >= 2, got shape {s.shape}")
    if groups is None:
        return 1.0
    g = np.asarray(groups)
    if g.shape != (s.shape[0],):
        raise PolyauditError(f"groups must have shape ({s.shape[0]},), got {g.shape}")
    _, inverse = np.unique(g, return_inverse=True)
    if inverse.max() + 1 == s.shape[0]:
        return 1.0
    u = s[:, : max(1, min(k, s.shape[1]))] ** 2
    u -= u.mean(axis=0)
    within = np.zeros((int(inverse.max()) + 1, u.shape[1]))
    np.add.at(within, inverse, u)
    denom = (u**2).sum(axis=0)
    ratio = (within**2).sum(axis=0)[denom > 0] / denom[denom > 0]
    return max(1.0, float(np.median(ratio))) if ratio.size else 1.0


def effective_samples(n: int, deff: float, n_groups: int | None = None) -> int:
    """n / deff rounded, between the number of groups (each worth at least one row) and n."""
    floor = 2 if n_groups is None else max(2, int(n_groups))
    return int(min(n, max(floor, round(n / max(1.0, deff)))))


def effective_n(parts: Sequence[tuple[np.ndarray, np.ndarray]], groups: np.ndarray | None) -> tuple[int, float]:
    """(effective samples, design effect) of layers that share their rows and `groups`: the largest
    design effect over the layers' decompositions (`decomposition_of`), the most conservative."""
    n = int(parts[0][1].shape[0])
    deff = max(design_effect(scores, groups) for _, scores in parts)
    n_groups = None if groups is None else len(np.unique(groups))
    return effective_samples(n, deff, n_groups), deff


def shared_fit_ranks(n_samples: int, spectra: Sequence[np.ndarray],
                     rank_bounds: Sequence[int | None] | None = None) -> tuple[int, int]:
    """`default_ranks` for n (effective) samples and the smallest numerical rank among `spectra`,
    each capped by the architecture's bound on it where known (`Adapter.rank_bound`: an MLP's
    up-projection lives in a d_model-dim subspace of its d_mlp units; past it float16 storage leaves
    only rounding noise, not a tail)."""
    return default_ranks(n_samples, min(_dims(eig, b) for eig, b in zip(spectra, _bounds(rank_bounds, len(spectra)),
                                                                            strict=True)))


def _dims(eig: np.ndarray, bound: int | None) -> int:
    dims = effective_dims(eig)
    return dims if bound is None else min(dims, int(bound))


def _bounds(rank_bounds: Sequence[int | None] | None, n: int) -> list[int | None]:
    return [None] * n if rank_bounds is None else list(rank_bounds)


@dataclass(frozen=True)
class LayerAlphas:
    """Power-law exponents of a model's layers, fitted over one shared rank range."""

    kept: list[int]  # layers fitted, shallow to deep
    alphas: np.ndarray  # [len(kept)]
    r2: np.ndarray
    participation: np.ndarray
    ranks: tuple[int, int]
    n_effective: int  # the samples' worth in independent units (sets the fit range)
    design_effect: float
    excluded: list[dict[str, Any]]  # layers whose spectrum resolves too few eigenvalues, and why


def layer_alphas(layers: Sequence[Any], *, ranks: tuple[int, int] | None = None,
                 rank_bounds: Sequence[int | None] | None = None) -> LayerAlphas:
    """alpha of every layer (SiteData, shallow to deep) that resolves enough eigenvalues for a fit,
    all over one rank range set by the effective number of samples (`effective_n`); a layer that
    does not (e.g. a 16-unit bottleneck with 8 live units) is excluded and listed, rather than
    shrinking every layer's range to what it resolves (none kept: `kept` empty, `ranks` (0, 0)).
    `rank_bounds`: the architecture's bound on each layer's rank (None where unknown)."""
    parts = [decomposition_of(data) for data in layers]  # one eigendecomposition per layer and run
    n_eff, deff = effective_n(parts, getattr(layers[0], "groups", None))
    dims = [_dims(eig, b) for (eig, _), b in zip(parts, _bounds(rank_bounds, len(layers)), strict=True)]
    kept: list[int] = []
    excluded: list[dict[str, Any]] = []
    for i, d in enumerate(dims):
        try:
            default_ranks(n_eff, d)
            kept.append(i)
        except PolyauditError as e:
            excluded.append({"layer": i, "effective_dims": d, "reason": str(e)})
    if not kept:  # a finding about the model: callers report it
        empty = np.empty(0)
        return LayerAlphas(kept=[], alphas=empty, r2=empty, participation=empty, ranks=(0, 0), n_effective=n_eff,
                           design_effect=deff, excluded=excluded)
    fit_ranks = ranks or default_ranks(n_eff, min(dims[i] for i in kept))
    fits = [fit_power_law(parts[i][0], fit_ranks) for i in kept]
    return LayerAlphas(
        kept=kept, alphas=np.array([f.alpha for f in fits]), r2=np.array([f.r2 for f in fits]),
        participation=np.array([participation_ratio(parts[i][0]) for i in kept]),
        ranks=fit_ranks, n_effective=n_eff, design_effect=deff, excluded=excluded,
    )
