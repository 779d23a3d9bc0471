"""C5 analysis: dropout promotes redundant, error-correcting codes (Marshall & Kirchner 2024, sec. 5,
Fig. 5, Thm. 3). Pure numpy over measurements (`polyaudit.interventions.dropout_runs` makes them from
models), so calibration studies can run it on planted data.

Family (models identical but for their training dropout rate D), per layer, over the models:
- robustness to perturbations the models were NOT trained against, each as performance retained,
  (P - chance) / (P_clean - chance), averaged over the perturbation's grid: Gaussian noise added to
  each unit (`noise`, NOISE_SCALES times the unit's own SD over the probe), the units of highest
  activation variance over the probe mean-ablated (`ablation`, ABLATE_FRACTIONS of the units;
  variance needs no labels, so the probe itself ranks them), and dropout at the model's input
  (`input`, one row per family). Effect: Spearman(D, robustness). PREDICTED POSITIVE: a redundant
  code survives damage it was not trained for.
- `robustness`: the same under test-time unit dropout at the site where the family was trained with
  dropout: a MANIPULATION CHECK (the training objective all but guarantees it), reported as such.
- spectral redundancy: the power-law exponent alpha of the layer's activation eigenspectrum. Effect:
  Spearman(D, alpha). PREDICTED NEGATIVE (steeper decay). The sign is DERIVED by polyaudit, not
  quoted: copies of a feature add variance to one eigen-direction of a basis-free spectrum, not to
  many, and by Thm. 3 a channel with dropout D has about (1 - D) times the base capacity, so the
  network codes fewer independent directions and its spectrum decays faster. The participation
  ratio is reported beside alpha.
CIs: bootstrap over models (the (rate, value) pairs resampled with replacement). p-values:
permutation of the rates over the models (exact under "the rate labels are exchangeable"). The
framework adjusts every row of a family together (`adjust_within="claim"`).

Single checkpoint (no family; polyaudit's corollary of the same argument, not a prediction of the
paper): at each layer's unit site, alpha and the loss increase under unit dropout at rate q; a
layer with a flatter spectrum (alpha nearer 0) should lose more. Both trend with depth in real
models, so the effect is Spearman of their FIRST DIFFERENCES across adjacent layers
(`depth.difference_trend`: exact permutation p valid for random-walk and exchangeable profiles;
Fisher-z interval with Bonett and Wright's variance), with the layers as the replicates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from polyaudit.analyses.coding import LayerAlphas, layer_alphas
from polyaudit.analyses.depth import DifferenceTrend, difference_trend, too_few_pairs
from polyaudit.claimspec import Check, ClaimSpec, PlotSpec, Statistic
from polyaudit.errors import PolyauditError
from polyaudit.stats import (
    percentile_ci,
    percentile_interval,
    permutation_p_value,
    spearman_or_nan,
    spearman_permutation_null,
    spearman_rows,
)
from polyaudit.threads import blas_threads, small_width
from polyaudit.verdict import Evidence, Prediction

TEST_RATES: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)  # test-time unit dropout grid (family)
NOISE_SCALES: tuple[float, ...] = (0.5, 1.0)  # Gaussian noise SD, in units of each unit's own SD
ABLATE_FRACTIONS: tuple[float, ...] = (0.1, 0.25)  # share of units (highest variance first) mean-ablated
INPUT_RATES: tuple[float, ...] = (0.1, 0.3)  # dropout at the model's input
SINGLE_RATE = 0.2  # unit dropout rate q of the single-checkpoint variant
MIN_MODELS = 4
MIN_LAYERS = 3
MIN_SAMPLES = 50
MIN_PERMUTATIONS = 9999  # cheap (one matrix product): p resolves 1e-4 whatever the profile
RELIABILITY = 0.99  # single checkpoint: measure groups until the loss increases' differences are this reliable
MIN_GROUPS = 16  # ... and at least this many groups (sequences, inputs), and a quarter of the probe's
ALPHA_RESOLUTION = 1e-3  # float16 activation storage moves alpha by ~1e-4; its sampling error is ~1e-2
# |rho| below 0.3: the ranks share under a tenth of their variance (Cohen's small-to-medium effect)
MIN_RHO = 0.3
RHO = "Spearman rho"

STATS = {
    "robustness": "spearman(train dropout, retained under unit dropout at the trained site) [manipulation check]",
    "noise": "spearman(train dropout, retained under Gaussian noise)",
    "ablation": "spearman(train dropout, retained with the highest-variance units ablated)",
    "input": "spearman(train dropout, retained under dropout at the input)",
    "alpha": "spearman(train dropout, alpha) [sign derived]",
}
STAT_SINGLE = "spearman(diff alpha, diff loss increase) over adjacent layers [polyaudit's corollary]"
PREDICTED: dict[str, Prediction] = {"robustness": "positive", "noise": "positive", "ablation": "positive", "input": "positive",
             "alpha": "negative"}

SPEC = ClaimSpec(
    id="C5", version=4, title="dropout promotes redundant codes",
    source="Marshall & Kirchner 2024, coding theory of polysemanticity (sec. 5, Fig. 5, Thm. 3)",
    statistics=(*(Statistic(k, text, PREDICTED[k], units=RHO, min_effect=MIN_RHO) for k, text in STATS.items()),
                Statistic("single", STAT_SINGLE, "positive", units=RHO, min_effect=MIN_RHO)),
    checks=(Check("dropout-robustness", "robustness"), Check("dropout-noise", "noise"),
            Check("dropout-ablation", "ablation"), Check("dropout-input", "input", first_site_only=True), Check("dropout-alpha", "alpha"),
            Check("unit-dropout", "single", sites=("mlp_out", "resid"), min_samples=MIN_SAMPLES)),
    plots=(PlotSpec("dropout", reads=("test_rates", "retained_by_train_rate", "capacity_bound", "layers")),),
    modules=("polyaudit.analyses.c5", "polyaudit.interventions.dropout_runs"),
    adjust_within="claim",
)
CLAIM, VERSION = SPEC.id, SPEC.version


@dataclass(frozen=True)
class FamilyMeasurements:
    """What was measured on a family: M models x L layers (x the grid of each perturbation)."""

    rates: np.ndarray  # [M] training dropout rate of each model
    retained: np.ndarray  # [M, L, Q] retained performance under test-time unit dropout q at layer l
    alpha: np.ndarray  # [M, L] power-law exponent of each layer's activation spectrum
    participation: np.ndarray  # [M, L] participation ratio of the same spectrum
    clean: np.ndarray  # [M] clean performance (accuracy, or a loss for loss metrics)
    chance: float  # performance of a model that ignores its input
    sites: tuple[str, ...]  # [L] site names
    test_rates: tuple[float, ...] = TEST_RATES
    metric: str = "accuracy"
    higher_is_better: bool = True
    r2: np.ndarray | None = None  # [M, L] fit quality of alpha
    noise: np.ndarray | None = None  # [M, L, len(NOISE_SCALES)] retained under Gaussian noise
    ablation: np.ndarray | None = None  # [M, L, len(ABLATE_FRACTIONS)] retained with top units ablated
    input_dropout: np.ndarray | None = None  # [M, len(INPUT_RATES)] retained under input dropout


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


def _family_values(m: FamilyMeasurements) -> dict[str, tuple[np.ndarray, tuple[float, ...], tuple[str, ...]]]:
    """stat -> (values [M, L] or [M, 1], the grid averaged over, the row sites)."""
    out = {"robustness": (np.asarray(m.retained, dtype=float).mean(axis=2), m.test_rates, m.sites)}
    for key, arr, grid in (("noise", m.noise, NOISE_SCALES), ("ablation", m.ablation, ABLATE_FRACTIONS)):
        if arr is not None:
            out[key] = (np.asarray(arr, dtype=float).mean(axis=2), grid, m.sites)
    if m.input_dropout is not None:
        out["input"] = (np.asarray(m.input_dropout, dtype=float).mean(axis=1, keepdims=True), INPUT_RATES,
                        m.sites[:1])
    out["alpha"] = (np.asarray(m.alpha, dtype=float), (), m.sites)
    return out


def family_evidence(m: FamilyMeasurements, *, n_boot: int, n_perm: int,
                    rng: np.random.Generator) -> dict[str, Evidence]:
    """Rows `STAT:SITE` for every statistic measured and every layer (`input:` at the first layer
    only: one row per family); `SPEC.adjust` adjusts them all together."""
    rows: dict[str, Evidence] = {}
    for stat, (values, grid, sites) in _family_values(m).items():
        for layer, site in enumerate(sites):
            rows[f"{stat}:{site}"] = _family_row(m, stat, layer, values[:, layer], grid, n_boot=n_boot,
                                                 n_perm=max(n_perm, MIN_PERMUTATIONS), rng=rng)
    return rows


def _family_row(m: FamilyMeasurements, stat: str, layer: int, v: np.ndarray, grid: tuple[float, ...], *,
                n_boot: int, n_perm: int, rng: np.random.Generator) -> Evidence:
    """The row of one statistic at one layer: `v` [M] its value for each model."""
    site = m.sites[layer]
    rates = np.asarray(m.rates, dtype=float)
    n_models = m.alpha.shape[0]
    if n_models < MIN_MODELS or len(np.unique(rates)) < 3:
        return SPEC.skipped(site, f"needs at least {MIN_MODELS} models over 3 dropout rates; the family has "
                                  f"{n_models} over {len(np.unique(rates))}", stat=stat)
    if not np.all(np.isfinite(v)):
        bad = ~np.isfinite(v)
        why = ("their spectrum at this layer resolves too few eigenvalues for a power-law fit" if stat == "alpha"
               else "their clean performance is no better than chance")
        return SPEC.failed(site, f"{stat} is undefined for {int(bad.sum())} of {n_models} models (rates "
                                 f"{', '.join(f'{r:g}' for r in np.unique(rates[bad]))}): {why}", stat=stat, n=n_models)
    try:
        trend = measure_trend(rates, v, n_boot, n_perm, rng)
    except PolyauditError as e:
        return SPEC.failed(site, str(e), stat=stat, n=n_models)
    if trend is None:
        return SPEC.undetermined(site, f"{stat} is the same for every model: Spearman is undefined", stat=stat, n=n_models)
    return SPEC.evidence(site, stat=stat, effect=trend.rho, ci=trend.ci, p=trend.p, n=n_models,
                         notes=_family_notes(m, stat, grid, n_models), details=_family_details(m, stat, layer, v, grid),
                         interval=percentile_interval(trend.replicates))


def _family_notes(m: FamilyMeasurements, stat: str, grid: tuple[float, ...], n_models: int) -> str:
    what = {"robustness": "MANIPULATION CHECK: unit dropout where the family was trained with dropout, q",
            "noise": "Gaussian noise per unit, SD (x the unit's own SD)",
            "ablation": "the highest-variance units mean-ablated, fraction",
            "input": "dropout at the model's input, q",
            "alpha": "alpha over one rank range shared by the models; predicted sign derived by polyaudit "
                     "(copies add variance to one direction of a basis-free spectrum; Thm. 3: capacity "
                     "(1 - D) x base), not quoted from the paper"}[stat]
    grid_txt = f" {', '.join(f'{g:g}' for g in grid)}; robustness = mean retained {m.metric}" if grid else ""
    return f"{n_models} models, rates {', '.join(f'{r:g}' for r in np.unique(m.rates))}; {what}{grid_txt}"


def _family_details(m: FamilyMeasurements, stat: str, layer: int, v: np.ndarray,
                    grid: tuple[float, ...]) -> dict[str, Any]:
    rates = np.asarray(m.rates, dtype=float)
    details: dict[str, Any] = {
        "layer": layer, "rates": rates.tolist(), "values": v.tolist(), "grid": list(grid),
        "mean_by_train_rate": _by_rate(rates, v), "n_models": int(rates.size), "metric": m.metric,
        "alpha_by_train_rate": _by_rate(rates, m.alpha[:, layer]),
        "participation_ratio_by_train_rate": _by_rate(rates, m.participation[:, layer]),
        "rho_participation_ratio": spearman_or_nan(rates, np.asarray(m.participation)[:, layer]),
        "manipulation_check": stat == "robustness",
    }
    if stat == "robustness":
        details.update(_bound_details(m, layer))
    if m.r2 is not None:
        details["min_r2"] = float(np.min(m.r2[:, layer]))
    return details


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


def difference_reliability(per_group: np.ndarray) -> float:
    """How much of the spread of the adjacent layers' differences in loss increase is not
    measurement noise: 1 - mean(SE^2) / var(mean differences) (the classical reliability; noise
    in one side attenuates a correlation by its square root). `per_group` [L, m]: each layer's
    increase per group (sequence, input) measured so far, paired across layers; the SE of each
    difference is over the groups. NaN with fewer than 2 groups or 2 differences; -inf when the
    differences are all equal."""
    d = np.diff(np.asarray(per_group, dtype=float), axis=0)
    if d.shape[0] < 2 or d.shape[1] < 2:
        return float("nan")
    spread = float(np.var(d.mean(axis=1), ddof=1))
    noise = float(np.mean(np.var(d, axis=1, ddof=1) / d.shape[1]))
    return 1.0 - noise / spread if spread > 0 else -math.inf


def enough_groups(per_group: np.ndarray, n_groups: int) -> bool:
    """The sequential rule of the single-checkpoint measurement: stop adding groups (in probe
    order) once at least max(MIN_GROUPS, a quarter of the probe's `n_groups`) are measured and the
    differences' reliability (`difference_reliability`) reaches RELIABILITY, so that measurement
    noise attenuates the Spearman by at most 1 - sqrt(0.99) = 0.5%. It reads the loss increases
    only, never alpha: under the null (changes unrelated) when it stops cannot relate them."""
    m = int(np.shape(per_group)[1])
    if m >= n_groups:
        return True
    if m < max(MIN_GROUPS, math.ceil(n_groups / 4)):
        return False
    r = difference_reliability(per_group)
    return bool(np.isfinite(r) and r >= RELIABILITY)


@dataclass(frozen=True)
class LayerLoss:
    """alpha of each fitted layer beside its mean loss increase under unit dropout, and the trend of
    their first differences across adjacent layers (None where undefined)."""

    fits: LayerAlphas
    loss_increase: np.ndarray  # [len(fits.kept)] mean over samples
    trend: DifferenceTrend | None


def measure_single(layers: Sequence[Any], inc: np.ndarray, *, rng: np.random.Generator,
                   ranks: tuple[int, int] | None, rank_bounds: Sequence[int | None] | None) -> LayerLoss:
    """Fits every layer (PolyauditError when none can be fitted) and, with MIN_LAYERS fitted, the
    first-difference trend."""
    fits = layer_alphas(layers, ranks=ranks, rank_bounds=rank_bounds)
    mean_inc = inc[fits.kept].mean(axis=1)
    trend = None
    if len(fits.kept) >= MIN_LAYERS:
        tol = 1e-9 * float(np.max(np.abs(mean_inc))) if np.any(mean_inc) else 0.0
        trend = difference_trend(fits.alphas, mean_inc, rng, x_resolution=ALPHA_RESOLUTION, y_resolution=tol)
    return LayerLoss(fits=fits, loss_increase=mean_inc, trend=trend)


def single_evidence(
    layers: Sequence[Any],
    increase: np.ndarray,
    *,
    site: str,
    rng: np.random.Generator,
    q: float = SINGLE_RATE,
    ranks: tuple[int, int] | None = None,
    rank_bounds: Sequence[int | None] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Evidence:
    """`layers`: per-layer SiteData at the unit site (shallow to deep); `increase` [L, n_samples]:
    each kept sample's loss increase under unit dropout at that layer (token probes: its sequence's);
    `rank_bounds`: the architecture's bound on each layer's rank (`Adapter.rank_bound`), or None."""
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
    width = max(int(np.shape(data.samples)[1]) for data in layers)
    try:
        with blas_threads(1, enabled=small_width(width)):
            t = measure_single(layers, inc, rng=rng, ranks=ranks, rank_bounds=rank_bounds)
    except PolyauditError as e:
        return SPEC.failed(site, str(e), n=n, stat="single")
    return _single_row(t, site=site, n=n, q=q, n_layers=len(layers), extra=extra)


def _single_row(t: LayerLoss, *, site: str, n: int, q: float, n_layers: int,
                extra: Mapping[str, Any] | None) -> Evidence:
    fits = t.fits
    per_layer = [{"layer": i, "alpha": float(fits.alphas[k]), "r2": float(fits.r2[k]),
                  "participation_ratio": float(fits.participation[k]), "loss_increase": float(t.loss_increase[k])}
                 for k, i in enumerate(fits.kept)]
    details: dict[str, Any] = {
        "layers": per_layer, "q": q, "ranks": list(fits.ranks), "n_layers": n_layers, "n_samples": n,
        "n_effective": fits.n_effective, "design_effect": fits.design_effect, "excluded_layers": fits.excluded,
        "rho_levels": spearman_or_nan(fits.alphas, t.loss_increase), **dict(extra or {})}
    if len(fits.kept) < MIN_LAYERS:  # a degenerate spectrum is a finding about the model, not an error
        low = ", ".join(f"{e['layer']} ({e['effective_dims']} dimensions)" for e in fits.excluded)
        return SPEC.skipped(site, f"the activations span too few dimensions for a power-law fit at layer(s) {low}: "
                                  f"{len(fits.kept)} layer(s) remain, {MIN_LAYERS} are needed", stat="single")
    tr = t.trend
    if tr is None:
        return SPEC.undetermined(site, "alpha or the loss increase changes by the same amount between every pair of "
                                 "adjacent layers: Spearman is undefined", n=n, details=details, stat="single")
    details.update(p_differences=tr.p_differences, p_levels=tr.p_levels, orderings=list(tr.orderings),
                   exact=list(tr.exact))
    excluded = f"; layers {', '.join(str(e['layer']) for e in fits.excluded)} excluded (too few eigenvalues)" \
        if fits.excluded else ""
    few = too_few_pairs(tr.n_pairs)
    lo, hi = tr.interval(0.95)
    return SPEC.evidence(
        site, stat="single", effect=tr.rho, ci=(lo, hi), p=tr.p, n=tr.n_pairs, interval=tr.interval,
        notes=(f"polyaudit's corollary (not the paper's prediction): unit dropout q={q:g} (survivors x 1/(1-q)) "
               f"at each layer's {site}; Spearman of the changes between {tr.n_pairs} adjacent layer pairs, "
               f"p = max(differences {tr.p_differences:.3g}, levels {tr.p_levels:.3g}) by exact permutation, "
               f"Fisher-z interval (Bonett-Wright variance); alpha fit ranks {fits.ranks[0]}-{fits.ranks[1]} for {fits.n_effective} "
               f"effective samples (min R^2 {float(np.min(fits.r2)):.2f}){excluded}{few}"
               + (f"; the loss is the change of {extra['semantic_change']}" if extra and extra.get("semantic_change")
                  else "")),
        details=details,
    )
