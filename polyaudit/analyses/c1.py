"""C1 analysis: spline-code clusters are more monosemantic than clusters of other units of description.

Black, Sharkey et al. 2022 ("Interpreting Neural Networks through the Polytope Lens", prediction 1,
sec. 4): regions named by spline codes group samples of one meaning better than regions named by
directions. At one layer's `mlp_pre`, the same samples are cut into K clusters four ways
(`polyaudit.measures.clustering.partitions`):

    polytope   k-means on +-1 spline codes (Hamming geometry)
    direction  k-means on L2-normalised activations
    neuron     the most active of the K most-often-most-active units
    random     the same Hamming k-means on codes of random hyperplanes, one per unit with that
               unit's on/off balance (control: do the network's own orientations matter?)

Monosemanticity is H(label | cluster) in bits (lower is purer), jackknife-corrected at the unit of
replication (`polyaudit.measures.purity`: the plug-in bias grows with the non-empty cells, so
partitions would differ by bias alone); AMI is reported beside it. One row per baseline, a paired
comparison: effect = H(baseline) - H(polytope) (predicted positive), averaged over N_RESTARTS
restarts of every clustering (a restart's random frame serves both K, as its spline codes do). Its
replicates resample the UNITS (`groups`: the word of a labelled:categories sample, the image of a
CNN position, else the sample), paired (the same units for every partition and restart), and add
the restarts' own variability: the spread of the per-restart effects over sqrt(restarts) times a
Student t draw with restarts - 1 degrees of freedom (`gap`: the spread is estimated from a handful
of restarts, and k-means now and then lands one far from the others, so a normal or a resample of
the restarts would trust a lucky tight handful). The CI (re-centred percentile, at any level:
`interval`) and the two-sided p both come from them. `n` counts units. K is set by the units
(`choose_k`); a second K (`second_k`) is measured too, and a PASS that would flip there is held
back (caveat). So are a degenerate partition (largest cluster above half the samples: reported, the
partitions are not compared at comparable K) and polytope clusters that carry no label
information beyond chance (a permutation of the units' labels; details: `p_labels`).
`measure_monosemanticity` measures; `monosemanticity` turns that into rows. Versions: docs/claims.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from polyaudit.claimspec import Check, ClaimSpec, PlotSpec, Statistic
from polyaudit.errors import PolyauditError
from polyaudit.measures.clustering import (
    MAX_FRACTION,
    METHODS,
    ClusterSizes,
    cluster_sizes,
    partitions,
    random_hyperplane_codes,
)
from polyaudit.measures.polytopes import spline_codes
from polyaudit.measures.purity import (
    adjusted_mutual_information,
    conditional_entropy,
    label_entropy,
    permuted_unit_entropies,
    unit_bootstrap,
    unit_counts,
    unit_entropies,
)
from polyaudit.serial import encode_array
from polyaudit.stats import Interval, bootstrap_p_value, percentile_interval, permutation_p_value
from polyaudit.verdict import Evidence

STATISTIC = "H(label|baseline) - H(label|polytope) [bits]"
BASELINES: tuple[str, ...] = METHODS[1:]
SESOI = 0.1  # bits: 2^0.1 = 1.07, a 7% change in the effective number of labels per cluster
MIN_SAMPLES = 100
MIN_UNITS_PER_CLUSTER = 30  # K is capped so that clusters average this many units (jackknife bias < 0.03 bits)
N_PERM_MIN = 1000
N_RESTARTS = 4  # independent clusterings per method; the replicates resample them
ALPHA_LABELS = 0.05  # polytope clusters must carry label information beyond chance at this level

SPEC = ClaimSpec(
    id="C1", version=5, title="polytopes are more monosemantic than directions",
    source="Black, Sharkey et al. 2022, Polytope Lens, prediction 1 (sec. 4)",
    statistics=(Statistic("entropy-gap", STATISTIC, "positive", units="bits", min_effect=SESOI),),
    checks=(Check("monosemantic", "entropy-gap", sites=("mlp_pre",), min_samples=MIN_SAMPLES),),
    plots=(PlotSpec("purity", reads=("methods",)),),
    modules=("polyaudit.analyses.c1", "polyaudit.interventions.lens"),
)
CLAIM, VERSION = SPEC.id, SPEC.version


def choose_k(n_units: int, n_labels: int) -> int:
    """K = 2 x the number of labels (room for pure clusters), at least 4, at most units / 30."""
    return int(max(2, min(max(4, 2 * n_labels), n_units // MIN_UNITS_PER_CLUSTER)))


def second_k(k: int, n_units: int) -> int | None:
    """The second K: 2K while clusters keep 15 units on average, else K / 2 (None below 2)."""
    if n_units // (2 * k) >= MIN_UNITS_PER_CLUSTER // 2:
        return 2 * k
    return k // 2 if k // 2 >= 2 else None


@dataclass(frozen=True)
class AtK:
    """Every method's partitions at one K in each restart, and their entropies: the estimate, under
    the unit bootstrap, and under the label permutations."""

    k: int
    runs: list[dict[str, np.ndarray]]  # per restart: cluster ids [n] of every method built
    broken: dict[str, str]  # baselines that could not be built, and why
    sizes: dict[str, ClusterSizes]  # per method, the worst restart (largest cluster)
    h_runs: dict[str, np.ndarray]  # [restarts] H(label | cluster), jackknifed over units
    plugin: dict[str, float]  # plug-in H, mean over restarts (details)
    ami: dict[str, float]  # AMI, mean over restarts (NaN at the second K)
    boot: dict[str, np.ndarray]  # [restarts, B] under the unit bootstrap
    null: dict[str, np.ndarray]  # [P] the first restart's H under label permutations (polytope at K)

    @property
    def h(self) -> dict[str, float]:
        return {m: float(v.mean()) for m, v in self.h_runs.items()}

    def p_labels(self, method: str) -> float:
        """Permutation p that the method's clusters (first restart) carry label information: its H
        below the H of the same clusters with the units' labels permuted (exact for a partition
        that never saw the labels)."""
        return permutation_p_value(float(self.h_runs[method][0]), self.null[method], alternative="less")


@dataclass(frozen=True)
class Monosemanticity:
    """What C1 measures at one layer: the partitions and entropies at K and at the second K."""

    n: int  # samples
    n_units: int
    n_labels: int
    unit_labels: bool  # every unit has one label: permutations move whole units
    n_boot: int
    n_perm: int
    restart_t: np.ndarray  # [B] Student t (restarts - 1 df): the restart mean's draw
    frame_t: np.ndarray  # [B] Student t (restarts - 1 df): a random frame's draw, for the random control
    main: AtK
    second: AtK | None


@dataclass(frozen=True)
class Gap:
    """effect = H(baseline) - H(polytope), its paired replicates (re-centred), CI at any level, p."""

    effect: float
    replicates: np.ndarray
    interval: Interval
    ci: tuple[float, float]
    p: float


def _score(x: np.ndarray, y: np.ndarray, units: np.ndarray, codes: np.ndarray, k: int, *,
           rng: np.random.Generator, weights: np.ndarray, perms: np.ndarray | None,
           planes: list[np.ndarray | None]) -> AtK:
    """Partitions at K in every restart, scored (the polytope partition of the first restart under
    the label permutations `perms`, when given). `planes`: each restart's random-hyperplane codes
    (its random frame, shared by both K as the polytope codes are). A partition met before (the
    neuron baseline is the same in every restart; clean codes give the same k-means partition) is
    scored once."""
    broken: dict[str, str] = {}
    runs = [partitions(x, codes, k, g, errors=broken, planes=frame)
            for g, frame in zip(rng.spawn(len(planes)), planes, strict=True)]
    methods = list(runs[0])
    ones = np.ones((1, weights.shape[1]))
    seen: dict[bytes, tuple[float, np.ndarray]] = {}

    def scored(ids: np.ndarray) -> tuple[float, np.ndarray]:
        key = _partition_key(ids)
        if key not in seen:
            uc = unit_counts(ids, y, units)
            seen[key] = (float(unit_entropies(uc, ones)[0]), unit_entropies(uc, weights))
        return seen[key]

    def null(m: str) -> np.ndarray:
        if perms is None or m != "polytope":  # the baselines' label information: their AMI
            return np.empty(0)
        uc = unit_counts(runs[0][m], y, units)
        return permuted_unit_entropies(uc if uc.unit_label is not None else unit_counts(runs[0][m], y), perms)

    results = {m: [scored(run[m]) for run in runs] for m in methods}
    return AtK(
        k=k, runs=runs, broken=broken,
        sizes={m: max((cluster_sizes(run[m], k) for run in runs), key=lambda z: z.largest_fraction) for m in methods},
        h_runs={m: np.array([h for h, _ in results[m]]) for m in methods},
        plugin={m: float(np.mean([conditional_entropy(run[m], y) for run in runs])) for m in methods},
        ami={m: float(np.mean([adjusted_mutual_information(run[m], y) for run in runs])) if perms is not None
             else float("nan") for m in methods},  # AMI at K only (details)
        boot={m: np.stack([b for _, b in results[m]]) for m in methods},
        null={m: null(m) for m in methods},
    )


def _random_planes(x: np.ndarray, codes: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """One restart's random control codes (a Haar frame, the layer's on-fractions), or None when
    they cannot be drawn (`partitions` then draws again and records why)."""
    try:
        return random_hyperplane_codes(x, np.asarray(codes).mean(axis=0), rng)
    except PolyauditError:
        return None


def _partition_key(ids: np.ndarray) -> bytes:
    """The same bytes for two cluster-id arrays that name the same partition (ids in order of
    first use)."""
    inv = np.unique(ids, return_inverse=True)[1].reshape(-1)
    first = np.unique(inv, return_index=True)[1]
    return bytes(np.argsort(np.argsort(first))[inv].astype(np.int32).tobytes())


def measure_monosemanticity(x: np.ndarray, y: np.ndarray, codes: np.ndarray, *, rng: np.random.Generator,
                            n_boot: int, n_perm: int, groups: np.ndarray | None = None,
                            k: int | None = None, restarts: int = N_RESTARTS) -> Monosemanticity:
    """Partitions of `x` [n, d] (spline `codes` [n, d]) at K and the second K in `restarts`
    restarts, scored against `y` [n]; one unit bootstrap (over `groups`, default: each sample),
    one draw of restarts per replicate and one set of label permutations serve every partition."""
    n = int(x.shape[0])
    units = np.unique(np.arange(n) if groups is None else np.asarray(groups), return_inverse=True)[1].reshape(-1)
    n_units = int(units.max()) + 1
    label_ids = np.unique(y, return_inverse=True)[1].reshape(-1)
    n_labels = int(label_ids.max()) + 1
    k = int(k or choose_k(n_units, n_labels))
    k2 = second_k(k, n_units)
    restarts = max(int(restarts), 1)
    g_main, g_second, g_boot, g_frames = rng.spawn(4)
    weights = unit_bootstrap(n_units, n_boot, g_boot)
    df = max(restarts - 1, 1)
    restart_t, frame_t = g_boot.standard_t(df, size=n_boot), g_boot.standard_t(df, size=n_boot)
    n_perm = max(n_perm, N_PERM_MIN)
    unit_label = np.zeros(n_units, dtype=np.int64)
    unit_label[units] = label_ids
    one_label = bool(np.array_equal(unit_label[units], label_ids))
    perms = g_boot.permuted(np.tile(np.arange(n_units if one_label else n), (n_perm, 1)), axis=1)
    planes = [_random_planes(x, codes, g) for g in g_frames.spawn(restarts)]
    main = _score(x, y, units, codes, k, rng=g_main, weights=weights, perms=perms, planes=planes)
    second = (None if k2 is None else
              _score(x, y, units, codes, k2, rng=g_second, weights=weights, perms=None, planes=planes))
    return Monosemanticity(n=n, n_units=n_units, n_labels=n_labels, unit_labels=one_label, n_boot=n_boot,
                           n_perm=n_perm, restart_t=restart_t, frame_t=frame_t, main=main, second=second)


def gap(m: Monosemanticity, at: AtK, baseline: str) -> Gap:
    """The restart-averaged effect of one baseline at one K. Its replicates: the restart mean under
    each unit resample (paired: every restart on the same units), plus the restart mean's own
    uncertainty, sd(per-restart effects) / sqrt(restarts) x a Student t draw (restarts - 1 df: the
    sd comes from the restarts themselves). For the random control the layer's own frame of
    hyperplanes is one frame: were it a random one, it would differ from the mean of the control's
    frames by their spread, which the replicates add the same way (the control's sd over restarts
    x a t draw)."""
    per_restart = at.h_runs[baseline] - at.h_runs["polytope"]
    effect = float(per_restart.mean())
    diff = at.boot[baseline] - at.boot["polytope"]  # [restarts, B]
    reps = diff.mean(axis=0)
    r = per_restart.size
    if r > 1:
        reps = reps + float(np.std(per_restart, ddof=1)) / np.sqrt(r) * m.restart_t
        if baseline == "random":
            reps = reps + float(np.std(at.h_runs[baseline], ddof=1)) * m.frame_t
    centred = reps - np.nanmean(reps) + effect
    interval = percentile_interval(centred)
    return Gap(effect=effect, replicates=centred, interval=interval, ci=interval(0.95),
               p=bootstrap_p_value(centred))


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
    unit: str = "sample",
    k: int | None = None,
    notes: str = "",
    extra_labels: dict[str, np.ndarray] | None = None,
    layer: int | None = None,
    restarts: int = N_RESTARTS,
) -> dict[str, Evidence]:
    """Rows keyed by baseline for one layer: `acts` [n, d] pre-activations, `labels` [n].

    `codes` defaults to the sign of `acts` (pass exact codes when the cache has them); `groups` are
    the units of replication (default: each sample), named `unit` in the notes. `extra_labels`
    (e.g. token identity) are scored with the same clusterings and reported in details only.
    """
    x = np.asarray(acts, dtype=np.float64)
    y = np.asarray(labels)
    reason = _unusable(x, y, groups)
    if reason:
        return {b: SPEC.failed(f"{site}/{b}", reason, n=int(x.shape[0])) for b in BASELINES}
    c = spline_codes(x) if codes is None else np.asarray(codes, dtype=bool)
    m = measure_monosemanticity(x, y, c, rng=rng, n_boot=n_boot, n_perm=n_perm, groups=groups, k=k,
                                restarts=restarts)
    common = _common_details(m, x, y, c, unit=unit, layer=layer)
    if extra_labels:
        weights = unit_bootstrap(m.n_units, n_boot, rng)
        units = np.unique(np.arange(m.n) if groups is None else groups, return_inverse=True)[1]
        common["extra_labels"] = {name: _score_extra(m.main.runs[0], lab, units, weights)
                                  for name, lab in extra_labels.items()}
    return {b: _baseline_row(m, b, site=f"{site}/{b}", unit=unit, notes=notes, common=common) for b in BASELINES}


def _unusable(x: np.ndarray, y: np.ndarray, groups: np.ndarray | None) -> str | None:
    """Why these samples cannot be scored (every row ERROR), or None."""
    n = int(x.shape[0])
    if n < MIN_SAMPLES:
        return f"{n} labelled samples, the claim needs at least {MIN_SAMPLES}"
    if not np.all(np.isfinite(x)):
        return f"activations contain {int(np.sum(~np.isfinite(x)))} NaN/inf values"
    if int(np.unique(y).size) < 2:
        return "every sample has the same label: purity is undefined"
    if groups is not None and (np.shape(groups) != (n,) or np.unique(groups).size < 2 * MIN_UNITS_PER_CLUSTER):
        return (f"{np.unique(groups).size} units of replication for {n} samples: the claim needs at least "
                f"{2 * MIN_UNITS_PER_CLUSTER}, one group id per sample")
    return None


def _method_table(at: AtK) -> dict[str, Any]:
    return {meth: {"H": at.h[meth], "H_plugin": at.plugin[meth], "H_per_restart": at.h_runs[meth].tolist(),
                   "sizes": at.sizes[meth].summary(),
                   **({"ami": at.ami[meth]} if np.isfinite(at.ami[meth]) else {}),
                   **({"p_labels": at.p_labels(meth)} if at.null[meth].size else {})}
            for meth in METHODS if meth in at.h_runs}


def _common_details(m: Monosemanticity, x: np.ndarray, y: np.ndarray, codes: np.ndarray, *,
                    unit: str, layer: int | None) -> dict[str, Any]:
    """The details every row of the layer shares: the per-method tables at both K."""
    return {
        "k": m.main.k, "k2": None if m.second is None else m.second.k, "n_samples": m.n, "n_units": m.n_units,
        "unit": unit, "n_labels": m.n_labels, "H_label": label_entropy(y), "methods": _method_table(m.main),
        "methods_k2": None if m.second is None else _method_table(m.second),
        "estimator": "H(label|cluster), delete-one-unit jackknife",
        "permuted": f"labels of whole {unit}s" if m.unit_labels else "labels of single samples (a unit has several)",
        "n_codes_distinct": int(np.unique(np.packbits(codes, axis=1), axis=0).shape[0]),
        "d": int(x.shape[1]), "n_boot": m.n_boot, "n_perm": m.n_perm, "max_fraction": MAX_FRACTION,
        "layer": layer, "restarts": len(m.main.runs), "sesoi": SESOI,
    }


def _second(m: Monosemanticity, b: str) -> tuple[dict[str, Any] | None, str | None]:
    """(details of the second K, caveat when a PASS would flip there)."""
    if m.second is None:
        return None, None
    if b in m.second.broken:
        return {"k": m.second.k, "skipped": m.second.broken[b]}, None
    g = gap(m, m.second, b)
    holds = g.effect >= SESOI and g.ci[0] > 0
    out = {"k": m.second.k, "effect": g.effect, "ci": list(g.ci), "p": g.p, "would_pass": holds}
    if holds:
        return out, None
    return out, (f"at the second K={m.second.k} the effect is {g.effect:.3g} bits, 95% CI "
                 f"[{g.ci[0]:.3g}, {g.ci[1]:.3g}]: the verdict depends on K")


def _caveats(m: Monosemanticity, b: str) -> tuple[list[str], list[str]]:
    """(findings for the notes, reasons that block a PASS)."""
    found, block = [], []
    for meth in ("polytope", b):
        s = m.main.sizes[meth]
        if s.degenerate():
            found.append(f"{meth} partition degenerate: largest cluster {s.largest_fraction:.0%} of the samples")
            block.append(f"the {meth} partition is degenerate (largest cluster {s.largest_fraction:.0%} > "
                         f"{MAX_FRACTION:.0%}): the partitions are not compared at comparable K")
    p_lab = m.main.p_labels("polytope")
    if not p_lab < ALPHA_LABELS:
        block.append(f"the polytope clusters carry no label information beyond chance (permutation p={p_lab:.3g})")
    return found, block


def _baseline_row(m: Monosemanticity, b: str, *, site: str, unit: str, notes: str,
                  common: dict[str, Any]) -> Evidence:
    """The row of baseline `b` (SKIPPED when it cannot be built at this K)."""
    at = m.main
    if b in at.broken:
        return SPEC.skipped(site, f"{b} baseline: {at.broken[b]}")
    g = gap(m, at, b)
    second, flip = _second(m, b)
    found, block = _caveats(m, b)
    if flip:
        block.append(flip)
    h, ami = at.h, at.ami
    text = (f"{notes}; " if notes else "") + (
        f"K={at.k}, {m.n_units} {unit}s ({m.n} samples), mean of {len(at.runs)} restarts; H polytope "
        f"{h['polytope']:.2f} vs {b} {h[b]:.2f} bits (H(label) {common['H_label']:.2f}); AMI "
        f"{ami['polytope']:.2f} vs {ami[b]:.2f}")
    return SPEC.evidence(
        site, effect=g.effect, ci=g.ci, p=g.p, n=m.n_units, interval=g.interval, replicates=g.replicates,
        caveat="; ".join(block) or None, notes="; ".join([text, *found]),
        details={**common, "baseline": b, "effect_ami": ami["polytope"] - ami[b],
                 "effect_plugin": at.plugin[b] - at.plugin["polytope"],
                 "effect_per_restart": (at.h_runs[b] - at.h_runs["polytope"]).tolist(),
                 "p_labels": {"polytope": at.p_labels("polytope")},
                 "degenerate": found, "second_k": second, "boot_effect": encode_array(g.replicates)},
    )


def _score_extra(clusters: dict[str, np.ndarray], labels: np.ndarray, units: np.ndarray,
                 weights: np.ndarray) -> dict[str, Any]:
    """H(label | cluster) (jackknifed over units), AMI and the effects with CIs of extra labels."""
    counts = {m: unit_counts(ids, labels, units) for m, ids in clusters.items()}
    h = {m: float(unit_entropies(uc, np.ones((1, uc.n_units)))[0]) for m, uc in counts.items()}
    boot = {m: unit_entropies(uc, weights) for m, uc in counts.items()}
    out: dict[str, Any] = {"n_labels": int(np.unique(labels).size), "H": h,
                           "ami": {m: adjusted_mutual_information(ids, labels) for m, ids in clusters.items()}}
    for b in BASELINES:
        if b in clusters:
            effect = h[b] - h["polytope"]
            lo, hi = percentile_interval(boot[b] - boot["polytope"], centre=effect)(0.95)
            out[f"effect_{b}"] = {"effect": effect, "ci": [lo, hi]}
    return out


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
    sampling, labels = the token at each kept position), with unit-bootstrap CIs of the effects."""
    x = np.asarray(acts, dtype=np.float64)
    n = x.shape[0]
    k = int(min(k, n // MIN_UNITS_PER_CLUSTER))
    if n < MIN_SAMPLES or k < 2 or not np.all(np.isfinite(x)):
        return {"skipped": f"{n} samples (need {MIN_SAMPLES}) or non-finite activations"}
    c = spline_codes(x) if codes is None else np.asarray(codes, dtype=bool)
    clusters = partitions(x, c, k, rng, errors={})
    units = np.unique(np.arange(n) if groups is None else groups, return_inverse=True)[1]
    out = _score_extra(clusters, np.asarray(token_ids), units, unit_bootstrap(int(units.max()) + 1, n_boot, rng))
    out.update(k=k, n=n, largest_fraction={m: cluster_sizes(ids, k).largest_fraction for m, ids in clusters.items()})
    return out
