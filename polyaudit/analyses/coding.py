"""Helpers shared by the coding-theory analyses (C5, C6).

- One rank range for the power-law fits that are compared with each other (the layers of a model,
  the models of a family at one layer), inside what the lowest-rank spectrum resolves, as C4 does,
  so alpha means the same thing in C4, C5 and C6. Unlike C4, a layer that resolves too few
  eigenvalues for any fit (a 16-unit bottleneck) is left out and listed instead of failing all.
- The run's shared eigendecomposition of a site (`decomposition_of`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from polyaudit.errors import PolyauditError
from polyaudit.measures.spectrum import (
    bootstrap_alphas,
    decompose,
    default_ranks,
    effective_dims,
    fit_power_law,
    participation_ratio,
)
from polyaudit.stats import bootstrap_resamples


def decomposition_of(data: Any) -> tuple[np.ndarray, np.ndarray]:
    """`decompose(data.samples)`, from the capture's per-run memo when `data` is a SiteData."""
    if isinstance(getattr(type(data), "decomposition", None), functools.cached_property):
        return data.decomposition
    return decompose(data.samples)


def shared_fit_ranks(n_samples: int, spectra: Sequence[np.ndarray],
                     rank_bounds: Sequence[int | None] | None = None) -> tuple[int, int]:
    """`default_ranks` for n samples and the smallest numerical rank among `spectra`, each capped
    by the architecture's bound on it where known (`Adapter.rank_bound`: an MLP's up-projection
    lives in a d_model-dim subspace of its d_mlp units; past it float16 storage leaves only
    rounding noise, not a tail)."""
    return default_ranks(n_samples, min(_dims(eig, b) for eig, b in zip(spectra, _bounds(rank_bounds, len(spectra)),
                                                                            strict=True)))


def _dims(eig: np.ndarray, bound: int | None) -> int:
    dims = effective_dims(eig)
    return dims if bound is None else min(dims, int(bound))


def _bounds(rank_bounds: Sequence[int | None] | None, n: int) -> list[int | None]:
    return [None] * n if rank_bounds is None else list(rank_bounds)


@dataclass(frozen=True)
class LayerAlphas:
    """Power-law exponents of a model's layers, fitted over one shared rank range, with paired
    bootstrap replicates (the same resamples of samples at every layer)."""

    kept: list[int]  # layers fitted, shallow to deep
    alphas: np.ndarray  # [len(kept)]
    r2: np.ndarray
    participation: np.ndarray
    boot: np.ndarray  # [len(kept), n_boot]
    ranks: tuple[int, int]
    resamples: list[np.ndarray]
    excluded: list[dict[str, Any]]  # layers whose spectrum resolves too few eigenvalues, and why


def layer_alphas(layers: Sequence[Any], n_boot: int, rng: np.random.Generator,
                 ranks: tuple[int, int] | None = None,
                 rank_bounds: Sequence[int | None] | None = None) -> LayerAlphas:
    """alpha of every layer (SiteData, shallow to deep) that resolves enough eigenvalues for a fit,
    all over one rank range; a layer that does not (e.g. a 16-unit bottleneck with 8 live units) is
    excluded and listed, rather than shrinking every layer's range to what it resolves.
    `rank_bounds`: the architecture's bound on each layer's rank (None where unknown).
    PolyauditError when no layer can be fitted."""
    n = int(layers[0].samples.shape[0])
    parts = [decomposition_of(data) for data in layers]  # one eigendecomposition per layer and run
    dims = [_dims(eig, b) for (eig, _), b in zip(parts, _bounds(rank_bounds, len(layers)), strict=True)]
    kept: list[int] = []
    excluded: list[dict[str, Any]] = []
    for i, d in enumerate(dims):
        try:
            default_ranks(n, d)
            kept.append(i)
        except PolyauditError as e:
            excluded.append({"layer": i, "effective_dims": d, "reason": str(e)})
    if not kept:
        raise PolyauditError(f"no layer resolves enough eigenvalues for a power-law fit: {excluded[0]['reason']}")
    fit_ranks = ranks or default_ranks(n, min(dims[i] for i in kept))
    resamples = bootstrap_resamples(n, n_boot, rng, groups=layers[0].groups)
    fits = [fit_power_law(parts[i][0], fit_ranks) for i in kept]
    return LayerAlphas(
        kept=kept, alphas=np.array([f.alpha for f in fits]), r2=np.array([f.r2 for f in fits]),
        participation=np.array([participation_ratio(parts[i][0]) for i in kept]),
        boot=np.stack([bootstrap_alphas(layers[i].samples, fit_ranks, resamples, decomposition=parts[i])
                       for i in kept]),
        ranks=fit_ranks, resamples=resamples, excluded=excluded,
    )
