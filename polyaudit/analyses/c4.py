"""C4 analysis: power-law exponent of the activation eigenspectrum per layer, and its trend with depth.

Marshall & Kirchner 2024 (coding theory of polysemanticity): eigenvalues of the activation covariance
decay as lambda_n ~ n^alpha (alpha < 0; the paper marks alpha = -1) and alpha changes with depth.

Per layer: Huber fit of log lambda on log n over one rank range for every layer, set by the
effective number of independent samples (`coding.effective_n`: sequences rather than tokens,
images rather than positions). The trend: the slope of alpha on relative depth x = l / (L - 1), in
alpha per unit depth (the change from the first layer to the last), with the LAYERS as the
replicates (`depth.meta_regression`): a random-effects meta-regression whose within-layer
covariance of the alphas comes from a paired bootstrap over units of replication (the same
resamples of whole groups at every layer) and whose layer-to-layer scatter tau^2 is estimated by
REML; Knapp-Hartung t on L - 2 degrees of freedom for the p-value and the interval. A handful of
layers with distinct alphas in no order is scatter, not a trend; a trend smaller than MIN_EFFECT
(0.1 alpha from the first layer to the last) is negligible whatever its p.

Goodness of fit: when a layer's log-log fit has R^2 below R2_MIN its spectrum is not a power law;
the row then reports the depth trend of the log-spectrum slope (its own statistic) with a caveat,
and cannot PASS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from polyaudit.analyses.coding import decomposition_of, effective_n
from polyaudit.analyses.depth import MetaRegression, meta_regression, relative_depth
from polyaudit.claimspec import Check, ClaimSpec, PlotSpec, Statistic
from polyaudit.errors import PolyauditError
from polyaudit.measures.spectrum import (
    PowerLawFit,
    default_ranks,
    effective_dims,
    fit_power_law,
    paired_bootstrap_alphas,
)
from polyaudit.serial import encode_array
from polyaudit.stats import bootstrap_resamples, percentile_ci
from polyaudit.verdict import Evidence

STATISTIC = "slope of alpha on relative depth"
STATISTIC_LOG = "slope of the log-spectrum slope on relative depth (not a power law)"
UNITS = "alpha per unit depth (first layer to last)"
# 0.1: twice the largest bias of the fit itself (0.045 at n = d, `default_ranks`), which may vary
# with depth, and a tenth of the paper's reference exponent -1
MIN_EFFECT = 0.1
R2_MIN = 0.9  # a log-log fit explaining less than 90% of the log spectrum's variance: not a power law
COV_RESAMPLES = 200  # paired bootstrap resamples for the alphas' covariance (Knapp-Hartung: its scale cancels)
MIN_LAYERS = 3
MIN_SAMPLES = 50
N_SPECTRUM_KEEP = 256  # eigenvalues per layer kept in details (for report plots)
SITES = ("resid", "mlp_pre")

SPEC = ClaimSpec(
    id="C4", version=2, title="eigenspectra follow a power law whose exponent changes with depth",
    source="Marshall & Kirchner 2024, coding theory of polysemanticity (sec. 4)",
    statistics=(Statistic("depth-trend", STATISTIC, "nonzero", units=UNITS, min_effect=MIN_EFFECT),
                Statistic("log-slope-trend", STATISTIC_LOG, "nonzero", units="log-log slope per unit depth",
                          min_effect=MIN_EFFECT)),
    checks=(Check("alpha-depth", "depth-trend", sites=SITES, min_samples=MIN_SAMPLES),),
    plots=(PlotSpec("alpha-depth", reads=("layers",)), PlotSpec("spectra", reads=("layers",))),
    modules=("polyaudit.analyses.c4",),
)
CLAIM, VERSION = SPEC.id, SPEC.version


@dataclass(frozen=True)
class DepthTrend:
    """Power-law fits of every layer over one rank range, their paired bootstrap replicates, and
    the meta-regression of alpha on relative depth."""

    fits: list[PowerLawFit]  # shallow to deep
    spectra: list[np.ndarray]  # eigenvalues per layer
    layer_ci: list[tuple[float, float]]  # percentile CI of each layer's alpha
    alphas: np.ndarray  # [L]
    boot: np.ndarray  # [L, B] paired bootstrap replicates of the alphas
    trend: MetaRegression
    ranks: tuple[int, int]
    n_effective: int
    design_effect: float


def measure_alpha_depth(layers: Sequence[Any], *, n_boot: int, rng: np.random.Generator,
                        ranks: tuple[int, int] | None = None, rank_bound: int | None = None) -> DepthTrend:
    """alpha per layer (one eigendecomposition each) over one rank range inside what the lowest-rank
    layer resolves from the effective samples, with the same resamples of units at every layer
    (min(n_boot, COV_RESAMPLES) of them). PolyauditError when a fit or the trend cannot be made."""
    n = layers[0].samples.shape[0]
    groups = layers[0].groups
    parts = [decomposition_of(data) for data in layers]  # one eigendecomposition per layer and run
    n_eff, deff = effective_n(parts, groups)
    dims = min(effective_dims(eig) for eig, _ in parts)
    fit_ranks = ranks or default_ranks(n_eff, min(dims, rank_bound or dims))
    resamples = bootstrap_resamples(n, min(n_boot, COV_RESAMPLES), rng, groups=groups)
    fits = [fit_power_law(eig, fit_ranks) for eig, _ in parts]
    boot = paired_bootstrap_alphas([data.samples for data in layers], fit_ranks, resamples, decompositions=parts)
    layer_ci = [percentile_ci(row) for row in boot]  # error when over 10% of replicates are undefined
    ok = np.all(np.isfinite(boot), axis=0)
    alphas = np.array([fit.alpha for fit in fits])
    trend = meta_regression(alphas, np.cov(boot[:, ok]), relative_depth(len(layers)))
    return DepthTrend(fits=fits, spectra=[eig for eig, _ in parts], layer_ci=layer_ci, alphas=alphas, boot=boot,
                      trend=trend, ranks=fit_ranks, n_effective=n_eff, design_effect=deff)


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
        return SPEC.skipped(site, f"needs at least {MIN_LAYERS} layers for a depth trend; the model has {n_layers}")
    for i, data in enumerate(layers):
        if data.n_nonfinite:
            return SPEC.failed(site, f"activations at layer {i} contain {data.n_nonfinite} NaN/inf values")
    try:
        t = measure_alpha_depth(layers, n_boot=n_boot, rng=rng, ranks=ranks, rank_bound=rank_bound)
    except PolyauditError as e:
        return SPEC.failed(site, str(e), n=n_layers)
    return _row(layers, t, site=site)


def _row(layers: Sequence[Any], t: DepthTrend, *, site: str) -> Evidence:
    n = layers[0].samples.shape[0]
    depth = relative_depth(len(layers))
    per_layer = [{
        "layer": i, "depth": float(depth[i]), "alpha": fit.alpha, "ci": [lo, hi], "r2": fit.r2,
        "ranks": list(fit.ranks), "abs_alpha_plus_1": abs(fit.alpha + 1.0), "n": int(n), "d": int(data.d),
        "spectrum": eig[:N_SPECTRUM_KEEP].astype(float).tolist(), "intercept": fit.intercept,
    } for i, (data, fit, eig, (lo, hi)) in enumerate(zip(layers, t.fits, t.spectra, t.layer_ci, strict=True))]
    bad = [row["layer"] for row in per_layer if row["r2"] < R2_MIN]
    caveat = (f"the spectrum is not a power law at layer(s) {', '.join(map(str, bad))} (R^2 < {R2_MIN:g}): "
              "the row is the depth trend of the log-spectrum slope, not of a power-law exponent") if bad else None
    m = t.trend
    r_lo, r_hi = t.ranks
    notes = (f"slope of alpha per unit depth (layer l at l/(L-1)) over {len(layers)} layers, random-effects "
             f"meta-regression (tau {np.sqrt(m.tau2):.3g} between layers; within-layer covariance from "
             f"{t.boot.shape[1]} paired resamples of units), Knapp-Hartung t on {m.df} df; fit ranks "
             f"{r_lo}-{r_hi} for {t.n_effective} effective of {n} samples (design effect {t.design_effect:.2g}); "
             "|alpha+1| by layer: " + ", ".join(f"{row['abs_alpha_plus_1']:.2f}" for row in per_layer)
             + f"; min R^2 {min(row['r2'] for row in per_layer):.2f}")
    lo, hi = m.interval(0.95)
    return SPEC.evidence(
        site, stat="log-slope-trend" if bad else "depth-trend", effect=m.slope, ci=(lo, hi), p=m.p,
        n=len(layers), notes=notes, interval=m.interval, caveat=caveat,
        details={"layers": per_layer, "alphas": t.alphas.tolist(), "ranks": [r_lo, r_hi], "n_layers": len(layers),
                 "n_samples": int(n), "n_groups": len(np.unique(layers[0].groups)),
                 "n_effective": t.n_effective, "design_effect": t.design_effect,
                 "tau": float(np.sqrt(m.tau2)), "kh_scale": m.scale, "df": m.df, "se": m.se,
                 "intercept": m.intercept, "n_boot": int(t.boot.shape[1]),
                 "boot_effect": encode_array(m.weights @ t.boot)},
    )
