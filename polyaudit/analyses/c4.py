"""C4 analysis: power-law exponent of the activation eigenspectrum per layer, and its trend with depth.

Marshall & Kirchner 2024 (coding theory of polysemanticity): eigenvalues of the activation covariance
decay as lambda_n ~ n^alpha (alpha < 0; the paper marks alpha = -1) and alpha changes with depth.
Per layer: Huber fit of log lambda on log n over the default rank range (see
`polyaudit.measures.spectrum.default_ranks`). Effect: Spearman(alpha, layer index). CI: paired
bootstrap — the same resamples of samples (of whole sequences for text) at every layer, so the CI
carries the sampling uncertainty of every alpha into the correlation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from polyaudit.analyses.coding import decomposition_of
from polyaudit.claimspec import Check, ClaimSpec, PlotSpec, Statistic
from polyaudit.errors import PolyauditError
from polyaudit.measures.spectrum import (
    PowerLawFit,
    bootstrap_alphas,
    default_ranks,
    effective_dims,
    fit_power_law,
)
from polyaudit.serial import encode_array
from polyaudit.stats import (
    bootstrap_p_value,
    bootstrap_resamples,
    percentile_ci,
    spearman,
    spearman_or_nan,
)
from polyaudit.verdict import Evidence

STATISTIC = "spearman(alpha, layer)"
MIN_EFFECT = 0.3  # |rho| < 0.3 across layers counts as "no systematic change with depth"
MIN_LAYERS = 3
MIN_SAMPLES = 50
N_SPECTRUM_KEEP = 256  # eigenvalues per layer kept in details (for report plots)
SITES = ("resid", "mlp_pre")

SPEC = ClaimSpec(
    id="C4", version=1, title="eigenspectra follow a power law whose exponent changes with depth",
    source="Marshall & Kirchner 2024, coding theory of polysemanticity (sec. 4)",
    statistics=(Statistic("depth-trend", STATISTIC, "nonzero", units="Spearman rho", min_effect=MIN_EFFECT),),
    checks=(Check("alpha-depth", "depth-trend", sites=SITES, min_samples=MIN_SAMPLES),),
    plots=(PlotSpec("alpha-depth", reads=("layers",)), PlotSpec("spectra", reads=("layers",))),
    modules=("polyaudit.analyses.c4",),
)
CLAIM, VERSION = SPEC.id, SPEC.version


@dataclass(frozen=True)
class DepthTrend:
    """Power-law fits of every layer over one rank range, their paired bootstrap replicates, and
    Spearman(alpha, depth) with its replicates."""

    fits: list[PowerLawFit]  # shallow to deep
    spectra: list[np.ndarray]  # eigenvalues per layer
    layer_ci: list[tuple[float, float]]  # percentile CI of each layer's alpha
    alphas: np.ndarray  # [L]
    rho: float
    replicates: np.ndarray  # [B] Spearman(depth, alpha) per paired replicate (NaN: undefined)
    ci: tuple[float, float]
    p: float
    ranks: tuple[int, int]


def measure_alpha_depth(layers: Sequence[Any], *, n_boot: int, rng: np.random.Generator,
                        ranks: tuple[int, int] | None = None, rank_bound: int | None = None) -> DepthTrend:
    """alpha per layer (one eigendecomposition each) over one rank range inside what the lowest-rank
    layer resolves, with the same resamples of samples at every layer. PolyauditError when a fit or
    the CI cannot be made."""
    n = layers[0].samples.shape[0]
    parts = [decomposition_of(data) for data in layers]  # one eigendecomposition per layer and run
    dims = min(effective_dims(eig) for eig, _ in parts)
    fit_ranks = ranks or default_ranks(n, min(dims, rank_bound or dims))
    resamples = bootstrap_resamples(n, n_boot, rng, groups=layers[0].groups)
    fits: list[PowerLawFit] = []
    layer_ci: list[tuple[float, float]] = []
    boot = np.empty((len(layers), n_boot))
    for i, (data, (eig, proj)) in enumerate(zip(layers, parts, strict=True)):
        fit = fit_power_law(eig, fit_ranks)
        boot[i] = bootstrap_alphas(data.samples, fit.ranks, resamples, decomposition=(eig, proj))
        layer_ci.append(percentile_ci(boot[i]))
        fits.append(fit)
    alphas = np.array([fit.alpha for fit in fits])
    depth = np.arange(len(layers), dtype=float)
    rho = spearman(depth, alphas)
    rho_boot = np.array([spearman_or_nan(depth, boot[:, b]) for b in range(n_boot)])
    lo, hi = percentile_ci(rho_boot)
    return DepthTrend(fits=fits, spectra=[eig for eig, _ in parts], layer_ci=layer_ci, alphas=alphas, rho=rho,
                      replicates=rho_boot, ci=(lo, hi), p=bootstrap_p_value(rho_boot), ranks=fit_ranks)


def alpha_depth(
    layers: Sequence[Any],
    *,
    site: str,
    n_boot: int,
    rng: np.random.Generator,
    ranks: tuple[int, int] | None = None,
    rank_bound: int | None = None,
) -> Evidence:
    """`layers`: per-layer SiteData (shallow to deep) — `.samples` [n, d], `.groups`, `.n_nonfinite`.
    `rank_bound`: the architecture's bound on the activations' rank (Adapter.rank_bound), so the
    fit range never reaches into dimensions that hold only rounding noise."""
    n_layers = len(layers)
    if n_layers < MIN_LAYERS:
        return SPEC.skipped(site, f"needs at least {MIN_LAYERS} layers to correlate alpha with depth; the model has {n_layers}")
    for i, data in enumerate(layers):
        if data.n_nonfinite:
            return SPEC.failed(site, f"activations at layer {i} contain {data.n_nonfinite} NaN/inf values")
    n, d = layers[0].samples.shape
    try:
        t = measure_alpha_depth(layers, n_boot=n_boot, rng=rng, ranks=ranks, rank_bound=rank_bound)
    except PolyauditError as e:
        return SPEC.failed(site, str(e), n=int(n))
    per_layer = [{
        "layer": i, "alpha": fit.alpha, "ci": [lo, hi], "r2": fit.r2, "ranks": list(fit.ranks),
        "abs_alpha_plus_1": abs(fit.alpha + 1.0), "n": int(n), "d": int(data.d),
        "spectrum": eig[:N_SPECTRUM_KEEP].astype(float).tolist(), "intercept": fit.intercept,
    } for i, (data, fit, eig, (lo, hi)) in enumerate(zip(layers, t.fits, t.spectra, t.layer_ci, strict=True))]
    r_lo, r_hi = t.ranks
    notes = (f"fit ranks {r_lo}-{r_hi} of {min(n, d)}; |alpha+1| by layer: "
             + ", ".join(f"{row['abs_alpha_plus_1']:.2f}" for row in per_layer)
             + f"; min R^2 {min(row['r2'] for row in per_layer):.2f}")
    return SPEC.evidence(
        site, effect=float(t.rho), ci=(float(t.ci[0]), float(t.ci[1])), p=float(t.p), n=int(n),
        notes=notes,
        details={"layers": per_layer, "alphas": t.alphas.tolist(), "ranks": [r_lo, r_hi],
                 "n_layers": n_layers, "n_groups": len(np.unique(layers[0].groups)), "n_boot": n_boot,
                 "boot_effect": encode_array(t.replicates)},
    )
