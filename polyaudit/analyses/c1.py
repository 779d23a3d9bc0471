"""C1 analysis: spline-code clusters are more monosemantic than clusters of other units of description.

Black, Sharkey et al. 2022 ("Interpreting Neural Networks through the Polytope Lens", prediction 1,
sec. 4): regions named by spline codes group samples of one meaning better than regions named by
directions. At one layer's `mlp_pre`, the same samples are cut into K clusters four ways
(see `polyaudit.measures.clustering`):

    polytope   k-means on +-1 spline codes (Hamming geometry)
    direction  k-means on L2-normalised activations
    neuron     the most active of the K most-often-most-active units
    random     the same Hamming k-means on codes of random hyperplanes, one per unit with that
               unit's on/off balance (control: do the network's own orientations matter?)

Monosemanticity is H(label | cluster) in bits (lower is purer); AMI is reported too. One row per
baseline: effect = H(baseline) - H(polytope) (predicted positive), averaged over N_RESTARTS
independent restarts of every clustering (each restart its own k-means starts and random
hyperplanes, from its own child generator): the clusterings are random, and the seed moves them.
CI: bootstrap that resamples the samples (whole sequences for text) AND the restarts (R drawn with
replacement per replicate), so the interval carries the clustering randomness as well as the
sampling; the percentile interval of the replicates re-centred on the estimate (plug-in entropies
shrink under resampling, and this bootstrap bias would otherwise shift the interval away from the
estimate).
p: two-sided permutation null, labels shuffled (at least N_PERM_MIN times, the same shuffles in
every restart), the restart-averaged effect against the restart-averaged null (two-sided, so that
a clear effect of the wrong sign can FAIL). A partition whose largest cluster holds more than half
the samples is degenerate: its rows are ERROR, never a verdict (a partition degenerate in any restart
counts). `measure_monosemanticity` measures (partitions, entropies, resampled and shuffled
entropies); `monosemanticity` turns that into rows. Earlier versions: docs/claims.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from polyaudit.claimspec import Check, ClaimSpec, PlotSpec, Statistic
from polyaudit.errors import PolyauditError
from polyaudit.measures import clustering as cl
from polyaudit.measures.clustering import MAX_FRACTION, ClusterSizes, cluster_sizes
from polyaudit.measures.polytopes import spline_codes
from polyaudit.measures.purity import (
    adjusted_mutual_information,
    conditional_entropy,
    label_entropy,
    permuted_entropies,
    resample_weights,
    weighted_entropies,
)
from polyaudit.serial import encode_array
from polyaudit.stats import (
    bootstrap_p_value,
    bootstrap_resamples,
    percentile_ci,
    permutation_p_value,
)
from polyaudit.verdict import Evidence

STATISTIC = "H(label|baseline) - H(label|polytope) [bits]"
BASELINES: tuple[str, ...] = ("direction", "neuron", "random")
METHODS: tuple[str, ...] = ("polytope", *BASELINES)
MIN_SAMPLES = 100
MIN_PER_CLUSTER = 20  # K is capped so that clusters average at least this many samples
N_PERM_MIN = 1000  # label shuffles are cheap; 1/1001, the smallest p, survives Holm over 9 rows
N_RESTARTS = 4  # independent clusterings per method; the CI resamples them

SPEC = ClaimSpec(
    id="C1", version=2, title="polytopes are more monosemantic than directions",
    source="Black, Sharkey et al. 2022, Polytope Lens, prediction 1 (sec. 4)",
    statistics=(Statistic("entropy-gap", STATISTIC, "positive", units="bits"),),
    checks=(Check("monosemantic", "entropy-gap", sites=("mlp_pre",), min_samples=MIN_SAMPLES),),
    plots=(PlotSpec("purity", reads=("methods",)),),
    modules=("polyaudit.analyses.c1", "polyaudit.interventions.lens"),
)
CLAIM, VERSION = SPEC.id, SPEC.version


def choose_k(n: int, n_labels: int) -> int:
    """K = 2 x the number of labels (room for pure clusters), at least 4, at most n / 20."""
    return int(max(2, min(max(4, 2 * n_labels), n // MIN_PER_CLUSTER)))


def partitions(acts: np.ndarray, codes: np.ndarray, k: int, rng: np.random.Generator,
               methods: Sequence[str] = METHODS, errors: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """Cluster ids [n] of each method (one child generator per method, in a fixed order). With
    `errors`, a baseline that cannot be built (e.g. fewer units than K for `neuron`, as in a CNN
    layer with few channels) is left out and its reason stored there; else it raises."""
    seeds = rng.spawn(len(METHODS))
    out: dict[str, np.ndarray] = {}
    for method, g in zip(METHODS, seeds, strict=True):
        if method not in methods:
            continue
        if method == "polytope":
            out[method] = cl.polytope_clusters(codes, k, g)
            continue
        try:
            if method == "direction":
                out[method] = cl.direction_clusters(acts, k, g)
            elif method == "neuron":
                out[method] = cl.neuron_clusters(acts, k)
            else:
                planes = cl.random_hyperplane_codes(acts, codes.mean(axis=0), g)
                out[method] = cl.polytope_clusters(planes, k, g)
        except PolyauditError as e:
            if errors is None:
                raise
            errors[method] = str(e)
    return out


@dataclass(frozen=True)
class Monosemanticity:
    """What C1 measures at one layer: every method's partitions in each restart, their label
    entropies, and the resampled and label-shuffled entropies the CIs and p-values come from."""

    k: int
    n_labels: int
    n_perm: int  # label shuffles drawn
    runs: list[dict[str, np.ndarray]]  # per restart: cluster ids [n] of every method built
    broken: dict[str, str]  # baselines that could not be built, and why
    sizes: dict[str, ClusterSizes]  # per method, the worst restart (largest cluster)
    h_runs: dict[str, np.ndarray]  # H(label | cluster) per restart [restarts]
    h: dict[str, float]  # their mean over restarts
    ami: dict[str, float]  # AMI, mean over restarts
    weights: np.ndarray  # bootstrap counts [B, n]
    boot: dict[str, np.ndarray]  # [restarts, B]: entropies under the bootstrap weights
    null: dict[str, np.ndarray]  # [restarts, n_perm]: entropies under the label shuffles
    pick: np.ndarray  # [B, restarts]: the restarts drawn in each bootstrap replicate

    @property
    def restarts(self) -> int:
        return len(self.runs)


@dataclass(frozen=True)
class BaselineEffect:
    """effect = H(baseline) - H(polytope), its re-centred bootstrap replicates, CI and permutation p."""

    effect: float
    replicates: np.ndarray  # samples and restarts resampled, re-centred on the effect
    ci: tuple[float, float]
    p: float


def measure_monosemanticity(x: np.ndarray, y: np.ndarray, codes: np.ndarray, *, rng: np.random.Generator,
                            n_boot: int, n_perm: int, groups: np.ndarray | None = None,
                            k: int | None = None, restarts: int = N_RESTARTS) -> Monosemanticity:
    """Partitions of `x` [n, d] (spline `codes` [n, d]) in `restarts` restarts, scored against
    `y` [n]; bootstrap weights over `groups` (default: each sample) and label shuffles, the same
    in every restart."""
    n = int(x.shape[0])
    n_labels = int(np.unique(y).size)
    k = k or choose_k(n, n_labels)
    broken: dict[str, str] = {}
    restarts = max(int(restarts), 1)
    runs = [partitions(x, codes, k, gr, errors=broken) for gr in rng.spawn(restarts)]
    methods = runs[0]
    all_sizes = {m: [cluster_sizes(run[m], k) for run in runs] for m in methods}
    sizes = {m: max(s, key=lambda z: z.largest_fraction) for m, s in all_sizes.items()}  # the worst restart
    h_runs = {m: np.array([conditional_entropy(run[m], y) for run in runs]) for m in methods}
    ami = {m: float(np.mean([adjusted_mutual_information(run[m], y) for run in runs])) for m in methods}
    g = None if groups is None or np.unique(groups).size == n else np.asarray(groups)
    weights = resample_weights(bootstrap_resamples(n, n_boot, rng, groups=g), n)
    n_perm = max(n_perm, N_PERM_MIN)
    perms = rng.permuted(np.tile(np.arange(n), (n_perm, 1)), axis=1)
    pick = rng.integers(0, restarts, size=(weights.shape[0], restarts))  # restarts drawn per replicate
    return Monosemanticity(
        k=k, n_labels=n_labels, n_perm=n_perm, runs=runs, broken=broken, sizes=sizes, h_runs=h_runs,
        h={m: float(v.mean()) for m, v in h_runs.items()}, ami=ami, weights=weights,
        boot={m: np.stack([weighted_entropies(run[m], y, weights) for run in runs]) for m in methods},
        null={m: np.stack([permuted_entropies(run[m], y, perms) for run in runs]) for m in methods},
        pick=pick,
    )


def baseline_effect(m: Monosemanticity, baseline: str) -> BaselineEffect:
    """The restart-averaged effect of one baseline: CI from replicates that resample the samples
    and the restarts (re-centred), p from the restart-averaged permutation null (two-sided)."""
    effect = m.h[baseline] - m.h["polytope"]
    diff = m.boot[baseline] - m.boot["polytope"]  # [restarts, B]
    reps = np.take_along_axis(diff, m.pick.T, axis=0).mean(axis=0)  # samples and restarts resampled
    centred = recentred(reps, effect)
    lo, hi = percentile_ci(centred)
    p = permutation_p_value(effect, (m.null[baseline] - m.null["polytope"]).mean(axis=0), alternative="two-sided")
    return BaselineEffect(effect=effect, replicates=centred, ci=(lo, hi), p=p)


def monosemanticity(
    acts: np.ndarray,
    labels: np.ndarray,
    *,
    site: str,
    rng: np.random.Generator,
    n_boot: int,
    n_perm: int,
    codes: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    k: int | None = None,
    notes: str = "",
    extra_labels: dict[str, np.ndarray] | None = None,
    layer: int | None = None,
    restarts: int = N_RESTARTS,
) -> dict[str, Evidence]:
    """Rows keyed by baseline for one layer: `acts` [n, d] pre-activations, `labels` [n].

    `codes` defaults to the sign of `acts` (pass exact codes when the cache has them); `groups` are
    the bootstrap units (default: each sample). `extra_labels` (e.g. token identity) are scored
    with the same clusterings and reported in details only.
    """
    x = np.asarray(acts, dtype=np.float64)
    y = np.asarray(labels)
    n = int(x.shape[0])
    reason = _unusable(x, y)
    if reason:
        return {b: SPEC.failed(f"{site}/{b}", reason, n=n) for b in BASELINES}
    c = spline_codes(x) if codes is None else np.asarray(codes, dtype=bool)
    m = measure_monosemanticity(x, y, c, rng=rng, n_boot=n_boot, n_perm=n_perm, groups=groups, k=k,
                                restarts=restarts)
    common = _common_details(m, x, y, c, n_boot=n_boot, layer=layer)
    if extra_labels:
        common["extra_labels"] = {
            name: _score_extra(m.runs[0], lab, m.weights) for name, lab in extra_labels.items()
        }
    return {b: _baseline_row(m, b, site=f"{site}/{b}", n=n, notes=notes, common=common) for b in BASELINES}


def _unusable(x: np.ndarray, y: np.ndarray) -> str | None:
    """Why these samples cannot be scored (every row ERROR), or None."""
    n = int(x.shape[0])
    if n < MIN_SAMPLES:
        return f"{n} labelled samples, the claim needs at least {MIN_SAMPLES}"
    if not np.all(np.isfinite(x)):
        return f"activations contain {int(np.sum(~np.isfinite(x)))} NaN/inf values"
    if int(np.unique(y).size) < 2:
        return "every sample has the same label: purity is undefined"
    return None


def _common_details(m: Monosemanticity, x: np.ndarray, y: np.ndarray, codes: np.ndarray, *,
                    n_boot: int, layer: int | None) -> dict[str, Any]:
    """The details every row of the layer shares: the per-method table and the sizes."""
    table = {meth: {"H": m.h[meth], "H_per_restart": m.h_runs[meth].tolist(), "ami": m.ami[meth],
                    "sizes": m.sizes[meth].summary()}
             for meth in METHODS if meth in m.runs[0]}
    return {
        "k": m.k, "n": int(x.shape[0]), "n_labels": m.n_labels, "H_label": label_entropy(y), "methods": table,
        "n_codes_distinct": int(np.unique(np.packbits(codes, axis=1), axis=0).shape[0]),
        "d": int(x.shape[1]), "n_boot": n_boot, "n_perm": m.n_perm, "max_fraction": MAX_FRACTION,
        "layer": layer, "restarts": m.restarts,
    }


def _baseline_row(m: Monosemanticity, b: str, *, site: str, n: int, notes: str,
                  common: dict[str, Any]) -> Evidence:
    """The row of baseline `b`: ERROR when it could not be built or a partition is degenerate."""
    if b in m.broken:
        return SPEC.failed(site, f"{b} baseline: {m.broken[b]}", n=n, details=common)
    bad = [meth for meth in ("polytope", b) if m.sizes[meth].degenerate()]
    if bad:
        return SPEC.failed(
            site,
            f"degenerate {' and '.join(bad)} clustering: the largest cluster holds "
            f"{max(m.sizes[meth].largest_fraction for meth in bad):.0%} of the samples (> {MAX_FRACTION:.0%})",
            n=n, details=common)
    e = baseline_effect(m, b)
    h, ami = m.h, m.ami
    return SPEC.evidence(
        site, effect=float(e.effect), ci=(float(e.ci[0]), float(e.ci[1])), p=float(e.p), n=n,
        notes=(f"{notes}; " if notes else "") + f"K={m.k}, mean of {m.restarts} restarts, H polytope "
              f"{h['polytope']:.2f} vs {b} {h[b]:.2f} bits (H(label) {common['H_label']:.2f}); AMI "
              f"{ami['polytope']:.2f} vs {ami[b]:.2f}",
        details={**common, "baseline": b, "effect_ami": ami["polytope"] - ami[b],
                 "effect_per_restart": (m.h_runs[b] - m.h_runs["polytope"]).tolist(),
                 "p_bootstrap": float(bootstrap_p_value(e.replicates)), "boot_effect": encode_array(e.replicates)},
    )


def token_identity(
    acts: np.ndarray,
    token_ids: np.ndarray,
    *,
    k: int,
    rng: np.random.Generator,
    n_boot: int,
    codes: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """Details only: H(token | cluster) of the four partitions of text samples (the paper's token
    sampling, labels = the token at each kept position), with bootstrap CIs of the effects."""
    x = np.asarray(acts, dtype=np.float64)
    n = x.shape[0]
    k = int(min(k, n // MIN_PER_CLUSTER))
    if n < MIN_SAMPLES or k < 2 or not np.all(np.isfinite(x)):
        return {"skipped": f"{n} samples (need {MIN_SAMPLES}) or non-finite activations"}
    c = spline_codes(x) if codes is None else np.asarray(codes, dtype=bool)
    clusters = partitions(x, c, k, rng)
    g = None if groups is None or np.unique(groups).size == n else np.asarray(groups)
    weights = resample_weights(bootstrap_resamples(n, n_boot, rng, groups=g), n)
    out = _score_extra(clusters, np.asarray(token_ids), weights)
    out.update(k=k, n=n, largest_fraction={m: cluster_sizes(ids, k).largest_fraction for m, ids in clusters.items()})
    return out


def recentred(reps: np.ndarray, estimate: float) -> np.ndarray:
    """Bootstrap replicates shifted so their mean is the estimate (removes the bootstrap bias)."""
    r = np.asarray(reps, dtype=np.float64)
    return r - np.nanmean(r) + estimate


def _score_extra(clusters: dict[str, np.ndarray], labels: np.ndarray, weights: np.ndarray) -> dict[str, Any]:
    """H(label | cluster), AMI and the effects with CIs of extra labels (details only)."""
    h = {m: conditional_entropy(ids, labels) for m, ids in clusters.items()}
    boot = {m: weighted_entropies(ids, labels, weights) for m, ids in clusters.items()}
    out: dict[str, Any] = {"n_labels": int(np.unique(labels).size), "H": h,
                           "ami": {m: adjusted_mutual_information(ids, labels) for m, ids in clusters.items()}}
    for b in BASELINES:
        if b not in clusters:
            continue
        effect = h[b] - h["polytope"]
        lo, hi = percentile_ci(recentred(boot[b] - boot["polytope"], effect))
        out[f"effect_{b}"] = {"effect": effect, "ci": [float(lo), float(hi)]}
    return out

