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
from typing import Any

import numpy as np

from polyaudit.claimspec import Check, ClaimSpec, PlotSpec, Statistic
from polyaudit.errors import PolyauditError
from polyaudit.serial import encode_array
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
    from polyaudit.analyses.coding import decomposition_of
    from polyaudit.measures.spectrum import (
        bootstrap_alphas,
        default_ranks,
        effective_dims,
        fit_power_law,
    )
    from polyaudit.stats import bootstrap_p_value, bootstrap_resamples, percentile_ci, spearman

    n_layers = len(layers)
    if n_layers < MIN_LAYERS:
        return SPEC.skipped(site, f"needs at least {MIN_LAYERS} layers to correlate alpha with depth; the model has {n_layers}")
    for i, data in enumerate(layers):
        if data.n_nonfinite:
            return SPEC.failed(site, f"activations at layer {i} contain {data.n_nonfinite} NaN/inf values")
    n, d = layers[0].samples.shape
    groups = layers[0].groups
    try:
        parts = [decomposition_of(data) for data in layers]  # one eigendecomposition per layer and run
        # one rank range for every layer, inside what the lowest-rank layer resolves
        dims = min(effective_dims(eig) for eig, _ in parts)
        fit_ranks = ranks or default_ranks(n, min(dims, rank_bound or dims))
        resamples = bootstrap_resamples(n, n_boot, rng, groups=groups)
        per_layer: list[dict[str, Any]] = []
        boot = np.empty((n_layers, n_boot))
        for i, (data, (eig, proj)) in enumerate(zip(layers, parts, strict=True)):
            fit = fit_power_law(eig, fit_ranks)
            boot[i] = bootstrap_alphas(data.samples, fit.ranks, resamples, decomposition=(eig, proj))
            lo, hi = percentile_ci(boot[i])
            per_layer.append({
                "layer": i, "alpha": fit.alpha, "ci": [lo, hi], "r2": fit.r2, "ranks": list(fit.ranks),
                "abs_alpha_plus_1": abs(fit.alpha + 1.0), "n": int(n), "d": int(data.d),
                "spectrum": eig[:N_SPECTRUM_KEEP].astype(float).tolist(), "intercept": fit.intercept,
            })
        alphas = np.array([row["alpha"] for row in per_layer])
        depth = np.arange(n_layers, dtype=float)
        rho = spearman(depth, alphas)
        rho_boot = np.array([_safe_spearman(depth, boot[:, b]) for b in range(n_boot)])
        lo, hi = percentile_ci(rho_boot)
        p = bootstrap_p_value(rho_boot)
    except PolyauditError as e:
        return SPEC.failed(site, str(e), n=int(n))
    r_lo, r_hi = fit_ranks
    notes = (f"fit ranks {r_lo}-{r_hi} of {min(n, d)}; |alpha+1| by layer: "
             + ", ".join(f"{row['abs_alpha_plus_1']:.2f}" for row in per_layer)
             + f"; min R^2 {min(row['r2'] for row in per_layer):.2f}")
    return SPEC.evidence(
        site, effect=float(rho), ci=(float(lo), float(hi)), p=float(p), n=int(n),
        notes=notes,
        details={"layers": per_layer, "alphas": alphas.tolist(), "ranks": [r_lo, r_hi],
                 "n_layers": n_layers, "n_groups": len(np.unique(groups)), "n_boot": n_boot,
                 "boot_effect": encode_array(rho_boot)},
    )


def _safe_spearman(x: np.ndarray, y: np.ndarray) -> float:
    from polyaudit.stats import spearman

    if not np.all(np.isfinite(y)) or np.ptp(y) == 0:
        return float("nan")
    return float(spearman(x, y))
