"""C5 analysis: dropout promotes redundant, error-correcting codes (Marshall & Kirchner 2024, sec. 5,
Fig. 5, Thm. 3). Pure numpy over measurements (`polyaudit.interventions.dropout_runs` makes them from
models), so calibration studies can run it on planted data.

Family (models identical but for their training dropout rate D):
- robustness: performance retained under test-time unit dropout at rate q at one layer,
  retained(q) = (P(q) - chance) / (P(0) - chance), averaged over the q grid. Effect:
  Spearman(D, robustness) over the family's models. PREDICTED POSITIVE: dropout trains codes that
  survive losing units.
- spectral redundancy: the power-law exponent alpha of the layer's activation eigenspectrum
  (lambda_n ~ n^alpha, alpha < 0). Effect: Spearman(D, alpha). PREDICTED NEGATIVE (steeper decay):
  the paper infers redundancy from the eigenspectrum; a redundant code repeats fewer independent
  directions across many units, and the eigenspectrum is basis-free, so copies of a feature add
  variance to ONE eigen-direction, not to many. Thm. 3 says the same from the other side: under
  dropout D the channel capacity is about (1 - D) times the base capacity, so the network codes
  fewer dimensions and its spectrum decays faster. (Not "redundancy spreads variance, so the
  spectrum flattens": spreading over units is invisible to a basis-free spectrum.) The
  participation ratio is reported beside alpha.
CIs: bootstrap over models (the (rate, value) pairs resampled with replacement; resampling seeds
only within each rate would hold the design fixed, and its CIs would exclude 0 too often under no
effect: docs/claims.md, C5 versions). p-values: permutation of the rates over the models (exact under "the rate
labels are exchangeable"), Holm-adjusted across layers. `details` compares the measured retained
curve with the paper's capacity bound 1 - q, and the clean performance of each rate with
(1 - D) x rate 0. A layer's alpha is fitted over one rank range shared by the family's models.

Single checkpoint (no family): at each layer's unit site, the loss increase under unit dropout at
rate q. Effect: Spearman across layers of (alpha, loss increase), paired bootstrap over probe
samples (both alpha and the increase are recomputed on the same resamples). PREDICTED POSITIVE,
from the same argument: a layer with a steeper spectrum (alpha further below 0) codes fewer
independent directions redundantly across its units and loses less when units drop out, and a
flatter layer (alpha nearer 0) loses more.

Each variant measures first (`measure_trend`, `measure_single`: the correlations and their
replicates) and then builds its rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from polyaudit.analyses.coding import LayerAlphas, layer_alphas
from polyaudit.claimspec import Check, ClaimSpec, PlotSpec, Statistic
from polyaudit.errors import PolyauditError
from polyaudit.stats import (
    bootstrap_p_value,
    percentile_ci,
    permutation_p_value,
    spearman_or_nan,
    spearman_permutation_null,
    spearman_rows,
)
from polyaudit.threads import blas_threads, small_width
from polyaudit.verdict import Evidence, Prediction

STAT_ROBUSTNESS = "spearman(train dropout, robustness)"
STAT_ALPHA = "spearman(train dropout, alpha)"
STAT_SINGLE = "spearman(alpha, loss increase under unit dropout)"
PREDICTED_ROBUSTNESS: Prediction = "positive"
PREDICTED_ALPHA: Prediction = "negative"
PREDICTED_SINGLE: Prediction = "positive"
TEST_RATES: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)  # test-time unit dropout grid (family)
SINGLE_RATE = 0.2  # unit dropout rate q of the single-checkpoint variant
MIN_MODELS = 4
MIN_LAYERS = 3
MIN_SAMPLES = 50
MIN_PERMUTATIONS = 9999  # cheap (one matrix product): p resolves 1e-4 whatever the profile

SPEC = ClaimSpec(
    id="C5", version=1, title="dropout promotes redundant codes",
    source="Marshall & Kirchner 2024, coding theory of polysemanticity (sec. 5, Fig. 5, Thm. 3)",
    statistics=(Statistic("robustness", STAT_ROBUSTNESS, PREDICTED_ROBUSTNESS, units="Spearman rho"),
                Statistic("alpha", STAT_ALPHA, PREDICTED_ALPHA, units="Spearman rho"),
                Statistic("single", STAT_SINGLE, PREDICTED_SINGLE, units="Spearman rho")),
    checks=(Check("dropout-robustness", "robustness"), Check("dropout-alpha", "alpha"),
            Check("unit-dropout", "single", sites=("mlp_out", "resid"), min_samples=MIN_SAMPLES)),
    plots=(PlotSpec("dropout", reads=("test_rates", "retained_by_train_rate", "capacity_bound", "layers")),),
    modules=("polyaudit.analyses.c5", "polyaudit.interventions.dropout_runs"),
    adjust_within="statistic",
)
CLAIM, VERSION = SPEC.id, SPEC.version


@dataclass(frozen=True)
class FamilyMeasurements:
    """What was measured on a family: M models x L layers (x Q test-time rates)."""

    rates: np.ndarray  # [M] training dropout rate of each model
    retained: np.ndarray  # [M, L, Q] retained performance under test-time dropout q at layer l
    alpha: np.ndarray  # [M, L] power-law exponent of each layer's activation spectrum
    participation: np.ndarray  # [M, L] participation ratio of the same spectrum
    clean: np.ndarray  # [M] clean performance (accuracy, or a loss for loss metrics)
    chance: float  # performance of a model that ignores its input
    sites: tuple[str, ...]  # [L] site names
    test_rates: tuple[float, ...] = TEST_RATES
    metric: str = "accuracy"
    higher_is_better: bool = True
    r2: np.ndarray | None = None  # [M, L] fit quality of alpha


# ---- family: measure --------------------------------------------------------------------------


@dataclass(frozen=True)
class Trend:
    """Spearman(rates, values) over a family's models: bootstrap over models, permutation p."""

    rho: float
    ci: tuple[float, float]
    p: float  # two-sided permutation p, with the +1 correction (never 0)
    replicates: np.ndarray  # [n_boot] bootstrap replicates (NaN where a resample is constant)


def measure_trend(rates: np.ndarray, values: np.ndarray, n_boot: int, n_perm: int,
                  rng: np.random.Generator) -> Trend | None:
    """Spearman(rates, values) over models with its CI and p; None when it is undefined (a
    constant side). PolyauditError when over MAX_UNDEFINED of the replicates are undefined."""
    rho = spearman_or_nan(rates, values)
    if not np.isfinite(rho):
        return None
    resamples = rng.integers(0, rates.size, size=(n_boot, rates.size))  # models, with replacement
    boot = spearman_rows(rates[resamples], values[resamples])
    lo, hi = percentile_ci(boot)  # error when over 10% of replicates are undefined
    p = permutation_p_value(rho, spearman_permutation_null(rates, values, n_perm, rng), "two-sided")
    return Trend(rho=rho, ci=(float(lo), float(hi)), p=float(p), replicates=boot)


# ---- family: rows -----------------------------------------------------------------------------


def family_evidence(m: FamilyMeasurements, *, n_boot: int, n_perm: int,
                    rng: np.random.Generator) -> dict[str, Evidence]:
    """Rows `robustness:SITE` and `alpha:SITE` for every layer (`SPEC.adjust` adjusts them across
    layers within each statistic)."""
    robustness = np.asarray(m.retained, dtype=float).mean(axis=2)
    rows: dict[str, Evidence] = {}
    for stat, values in (("robustness", robustness), ("alpha", np.asarray(m.alpha, dtype=float))):
        for layer, site in enumerate(m.sites):
            rows[f"{stat}:{site}"] = _family_row(m, stat, layer, values[:, layer], n_boot=n_boot,
                                                 n_perm=max(n_perm, MIN_PERMUTATIONS), rng=rng)
    return rows


def _family_row(m: FamilyMeasurements, stat: str, layer: int, v: np.ndarray, *, n_boot: int, n_perm: int,
                rng: np.random.Generator) -> Evidence:
    """The row of one statistic at one layer: `v` [M] its value for each model."""
    site = m.sites[layer]
    rates = np.asarray(m.rates, dtype=float)
    n_models = m.alpha.shape[0]
    if n_models < MIN_MODELS or len(np.unique(rates)) < 3:
        return SPEC.skipped(site, f"needs at least {MIN_MODELS} models over 3 dropout rates; the family has "
                                  f"{n_models} over {len(np.unique(rates))}", stat=stat)
    if not np.all(np.isfinite(v)):
        bad = ~np.isfinite(v)
        why = ("their clean performance is no better than chance" if stat == "robustness" else
               "their spectrum at this layer resolves too few eigenvalues for a power-law fit")
        return SPEC.failed(site, f"{stat} is undefined for {int(bad.sum())} of {n_models} models (rates "
                                 f"{', '.join(f'{r:g}' for r in np.unique(rates[bad]))}): {why}", stat=stat, n=n_models)
    try:
        trend = measure_trend(rates, v, n_boot, n_perm, rng)
    except PolyauditError as e:
        return SPEC.failed(site, str(e), stat=stat, n=n_models)
    if trend is None:
        return SPEC.failed(site, f"{stat} is the same for every model: Spearman is undefined", stat=stat, n=n_models)
    details: dict[str, Any] = {
        "layer": layer, "rates": rates.tolist(), "values": v.tolist(),
        "mean_by_train_rate": _by_rate(rates, v), "n_models": n_models,
        "n_boot": n_boot, "n_perm": n_perm, "metric": m.metric,
        "alpha_by_train_rate": _by_rate(rates, m.alpha[:, layer]),
        "participation_ratio_by_train_rate": _by_rate(rates, m.participation[:, layer]),
        "rho_participation_ratio": spearman_or_nan(rates, np.asarray(m.participation)[:, layer]),
    }
    if stat == "robustness":
        details.update(_bound_details(m, layer))
    if m.r2 is not None:
        details["min_r2"] = float(np.min(m.r2[:, layer]))
    notes = (f"{n_models} models, rates {', '.join(f'{r:g}' for r in np.unique(rates))}; "
             f"robustness = mean retained {m.metric} over test-time q "
             f"{', '.join(f'{q:g}' for q in m.test_rates)}")
    return SPEC.evidence(site, stat=stat, effect=trend.rho, ci=trend.ci, p=trend.p, n=n_models,
                         notes=notes, details=details)


def _by_rate(rates: np.ndarray, values: np.ndarray) -> dict[str, Any]:
    """Mean of `values` (first axis: models) at each training rate."""
    return {f"{r:g}": np.asarray(values)[rates == r].mean(axis=0).tolist() for r in np.unique(rates)}


def _bound_details(m: FamilyMeasurements, layer: int) -> dict[str, Any]:
    """The measured curves beside the paper's capacity bound (Thm. 3: capacity ~ (1 - D) x base)."""
    rates = np.asarray(m.rates, dtype=float)
    q = np.asarray(m.test_rates, dtype=float)
    curves = _by_rate(rates, m.retained[:, layer, :])
    sign = 1.0 if m.higher_is_better else -1.0
    clean_rel = sign * (np.asarray(m.clean) - m.chance)
    base = clean_rel[rates == rates.min()].mean()
    clean_by_rate = {k: v / base for k, v in _by_rate(rates, clean_rel).items()} if base > 0 else {}
    return {
        "test_rates": q.tolist(),
        "capacity_bound": np.round(1.0 - q, 12).tolist(),
        "retained_by_train_rate": curves,
        "above_bound_fraction_by_train_rate": {
            k: float(np.mean(np.asarray(v) >= 1.0 - q)) for k, v in curves.items()
        },
        "clean_relative_to_lowest_rate": clean_by_rate,
        "clean_bound_by_train_rate": {f"{r:g}": round(1.0 - r, 12) for r in np.unique(rates)},
    }


def retained(perf: np.ndarray, clean: np.ndarray, chance: float, higher_is_better: bool) -> np.ndarray:
    """(P(q) - chance) / (P(0) - chance) with the sign of the metric; NaN where the clean model is
    no better than chance. `perf` [M, ...] with `clean` [M] broadcast over the trailing axes."""
    sign = 1.0 if higher_is_better else -1.0
    gain = sign * (np.asarray(clean, dtype=float) - chance)
    gain = np.where(gain > 0, gain, np.nan)
    shape = (-1,) + (1,) * (np.ndim(perf) - 1)
    return np.asarray(sign * (np.asarray(perf, dtype=float) - chance)) / gain.reshape(shape)


# ---- single checkpoint --------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerLoss:
    """alpha of each fitted layer beside its mean loss increase under unit dropout, Spearman across
    the layers, and its paired bootstrap replicates (same resamples of samples for both)."""

    fits: LayerAlphas
    loss_increase: np.ndarray  # [len(fits.kept)] mean over samples
    rho: float  # NaN where undefined
    replicates: np.ndarray | None  # [n_boot]; None when there is no trend to resample


def measure_single(layers: Sequence[Any], inc: np.ndarray, *, n_boot: int, rng: np.random.Generator,
                   ranks: tuple[int, int] | None, rank_bounds: Sequence[int | None] | None) -> LayerLoss:
    """Fits every layer (PolyauditError when none can be fitted), and resamples the trend when
    MIN_LAYERS layers were fitted and it is defined."""
    fits = layer_alphas(layers, n_boot, rng, ranks, rank_bounds)
    kept = fits.kept
    mean_inc = inc[kept].mean(axis=1)
    if len(kept) < MIN_LAYERS:
        return LayerLoss(fits=fits, loss_increase=mean_inc, rho=float("nan"), replicates=None)
    rho = spearman_or_nan(fits.alphas, mean_inc)
    if not np.isfinite(rho):
        return LayerLoss(fits=fits, loss_increase=mean_inc, rho=rho, replicates=None)
    boot_inc = np.stack([inc[kept][:, idx].mean(axis=1) for idx in fits.resamples], axis=1)
    boot = np.array([spearman_or_nan(fits.boot[:, b], boot_inc[:, b]) for b in range(n_boot)])
    return LayerLoss(fits=fits, loss_increase=mean_inc, rho=rho, replicates=boot)


def single_evidence(
    layers: Sequence[Any],
    increase: np.ndarray,
    *,
    site: str,
    n_boot: int,
    rng: np.random.Generator,
    q: float = SINGLE_RATE,
    ranks: tuple[int, int] | None = None,
    rank_bounds: Sequence[int | None] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Evidence:
    """`layers`: per-layer SiteData at the unit site (shallow to deep); `increase` [L, n_samples]:
    each kept sample's loss increase under unit dropout at that layer (token probes: its sequence's);
    `rank_bounds`: the architecture's bound on each layer's rank (`Adapter.rank_bound`), or None."""
    width = max((int(np.shape(data.samples)[1]) for data in layers), default=0)
    with blas_threads(1, enabled=small_width(width)):
        return _single_evidence(layers, increase, site=site, n_boot=n_boot, rng=rng, q=q, ranks=ranks,
                                rank_bounds=rank_bounds, extra=extra)


def _single_evidence(
    layers: Sequence[Any],
    increase: np.ndarray,
    *,
    site: str,
    n_boot: int,
    rng: np.random.Generator,
    q: float = SINGLE_RATE,
    ranks: tuple[int, int] | None = None,
    rank_bounds: Sequence[int | None] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Evidence:
    if len(layers) < MIN_LAYERS:
        return SPEC.skipped(site, f"needs at least {MIN_LAYERS} layers to "
                                  f"correlate across layers; the model has {len(layers)}", stat="single")
    for i, data in enumerate(layers):
        if data.n_nonfinite:
            return SPEC.failed(site, f"activations at layer {i} contain {data.n_nonfinite} NaN/inf values", stat="single")
    inc = np.asarray(increase, dtype=float)
    if not np.all(np.isfinite(inc)):
        return SPEC.failed(site, "the loss under unit dropout is not finite", stat="single")
    n = int(layers[0].samples.shape[0])
    try:
        t = measure_single(layers, inc, n_boot=n_boot, rng=rng, ranks=ranks, rank_bounds=rank_bounds)
    except PolyauditError as e:
        return SPEC.failed(site, str(e), n=n, stat="single")
    return _single_row(t, site=site, n=n, q=q, n_boot=n_boot, n_layers=len(layers), extra=extra)


def _single_row(t: LayerLoss, *, site: str, n: int, q: float, n_boot: int, n_layers: int,
                extra: Mapping[str, Any] | None) -> Evidence:
    fits = t.fits
    per_layer = [{"layer": i, "alpha": float(fits.alphas[k]), "r2": float(fits.r2[k]),
                  "participation_ratio": float(fits.participation[k]), "loss_increase": float(t.loss_increase[k])}
                 for k, i in enumerate(fits.kept)]
    details = {"layers": per_layer, "q": q, "ranks": list(fits.ranks), "n_boot": n_boot,
               "n_layers": n_layers, "excluded_layers": fits.excluded, **dict(extra or {})}
    if len(fits.kept) < MIN_LAYERS:
        return SPEC.failed(site, f"only {len(fits.kept)} layer(s) resolve enough eigenvalues for a power-law "
                                 f"fit; {MIN_LAYERS} are needed", n=n, details=details, stat="single")
    if t.replicates is None:
        return SPEC.failed(site, "alpha or the loss increase is the same at "
                                 "every layer: Spearman is undefined", n=n, details=details, stat="single")
    try:
        lo, hi = percentile_ci(t.replicates)  # error when over 10% of replicates are undefined
        p = bootstrap_p_value(t.replicates)
    except PolyauditError as e:
        return SPEC.failed(site, str(e), n=n, details=details, stat="single")
    excluded = f"; layers {', '.join(str(e['layer']) for e in fits.excluded)} excluded (too few eigenvalues)" \
        if fits.excluded else ""
    return SPEC.evidence(
        site, stat="single", effect=t.rho, ci=(float(lo), float(hi)), p=float(p), n=n,
        notes=(f"unit dropout q={q:g} (inverted: survivors x 1/(1-q)) at each layer's {site}; "
               f"alpha fit ranks {fits.ranks[0]}-{fits.ranks[1]}{excluded}"),
        details=details,
    )
