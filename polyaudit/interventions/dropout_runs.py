"""C5 measurements from models: test-time perturbation runs and activation spectra, for a dropout
family or a single checkpoint. The statistics live in `polyaudit.analyses.c5` (pure numpy).

Per family member and layer (its unit site): performance under unit dropout at each rate of the
grid (the manipulation check), under Gaussian noise scaled to each unit's SD, with the
highest-variance units mean-ablated; per member: under dropout at the model's input; and each
layer's spectrum (alpha over one rank range shared by the models, from the effective samples).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from polyaudit.analyses.c5 import (
    ABLATE_FRACTIONS,
    INPUT_RATES,
    NOISE_SCALES,
    SINGLE_RATE,
    TEST_RATES,
    FamilyMeasurements,
    difference_reliability,
    enough_groups,
    retained,
)
from polyaudit.analyses.coding import decomposition_of, effective_n, shared_fit_ranks
from polyaudit.errors import PolyauditError
from polyaudit.interventions.unit_dropout import (
    Task,
    gaussian_noise,
    input_writer,
    mean_ablation,
    per_sample,
    score,
    score_layers,
    scored_positions,
    site_moments,
    task_for,
    top_variance_mask,
    torch_generator,
    unit_site_kind,
)
from polyaudit.measures.spectrum import fit_power_law, participation_ratio
from polyaudit.threads import blas_threads, compute_threads, small_width


def fit_layer(eigs: Sequence[np.ndarray | None], n: int, rank_bound: int | None = None
              ) -> list[tuple[float, float, float]]:
    """(alpha, participation ratio, R^2) of each spectrum of ONE layer across models, all fitted over
    one shared rank range (so the models' alphas are comparable); NaNs where it cannot be fitted.
    `n`: the (effective) number of samples; `rank_bound`: the architecture's bound on the layer's
    rank (`Adapter.rank_bound`), or None."""
    nan = (float("nan"),) * 3
    valid = [e for e in eigs if e is not None]
    try:
        ranks = shared_fit_ranks(n, valid, [rank_bound] * len(valid)) if valid else None
    except PolyauditError:
        ranks = None
    out = []
    for eig in eigs:
        if eig is None or ranks is None:
            out.append(nan)
            continue
        try:
            fit = fit_power_law(eig, ranks)
            out.append((float(fit.alpha), float(participation_ratio(eig)), float(fit.r2)))
        except PolyauditError:
            out.append(nan)
    return out


def _spectra(layers: Sequence[Any]) -> tuple[list[np.ndarray | None], int]:
    """Each layer's eigenvalues (None where the data has no variance) and the effective samples."""
    parts: list[tuple[np.ndarray, np.ndarray] | None] = []
    for data in layers:
        try:
            parts.append(decomposition_of(data))
        except PolyauditError:
            parts.append(None)
    valid = [p for p in parts if p is not None]
    n_eff = effective_n(valid, layers[0].groups)[0] if valid else int(layers[0].samples.shape[0])
    return [None if p is None else p[0] for p in parts], n_eff


def _member_runs(sub: Any, task: Task, sites: Sequence[Any], rng: np.random.Generator, test_rates: Sequence[float],
                 batch_size: int) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(clean, unit dropout [L, Q], noise [L, S], ablation [L, F], input dropout [R]) of one model."""
    loaded, probe = sub.loaded, sub.probe()

    def run(**kw: Any) -> float:
        return score(loaded, probe, task, batch_size=batch_size, **kw).mean_metric

    clean = run()
    drop = np.array([[run(site=s, q=q, generator=torch_generator(rng)) for q in test_rates] for s in sites])
    noise = np.empty((len(sites), len(NOISE_SCALES)))
    ablation = np.empty((len(sites), len(ABLATE_FRACTIONS)))
    for j, s in enumerate(sites):
        mean, sd = site_moments(loaded, probe, s, batch_size)
        noise[j] = [run(site=s, writer=gaussian_noise(sd, c, torch_generator(rng))) for c in NOISE_SCALES]
        ablation[j] = [run(site=s, writer=mean_ablation(top_variance_mask(sd, f), mean)) for f in ABLATE_FRACTIONS]
    inputs = np.full(len(INPUT_RATES), np.nan)
    for k, q in enumerate(INPUT_RATES):
        site, writer, perturb = input_writer(sub.adapter, q, torch_generator(rng))
        if writer is not None or perturb is not None:
            inputs[k] = run(site=site, writer=writer, perturb_input=perturb)
    return clean, drop, noise, ablation, inputs


def measure_family(
    members: Sequence[tuple[float, Any]],
    *,
    rng: np.random.Generator,
    test_rates: Sequence[float] = TEST_RATES,
    batch_size: int = 8,
) -> FamilyMeasurements:
    """`members`: (training rate, run-time Subject) pairs. For every member: the probe's mean metric
    under each perturbation (module docstring); and each layer's spectrum."""
    first = members[0][1]
    kind = unit_site_kind(first.adapter)
    sites = first.adapter.sites(kind)
    runs = []
    chance, metric, higher = float("nan"), "", True
    spectra: dict[int, list[np.ndarray | None]] = {}
    n_eff: list[int] = []
    for _, sub in members:
        with compute_threads(sub.loaded.model):
            task = task_for(sub.loaded, sub.probe())
            chance, metric, higher = task.chance, task.metric, task.higher_is_better
            runs.append(_member_runs(sub, task, sub.adapter.sites(kind), rng, test_rates, batch_size))
            if id(sub) not in spectra:  # a model listed twice is one model: one spectrum
                spectra[id(sub)], n = _spectra(sub.capture().get_kind(kind))
                n_eff.append(n)
    clean = np.array([r[0] for r in runs])
    alpha, pr, r2 = (np.empty((len(members), len(sites))) for _ in range(3))
    width = max((e.shape[0] for es in spectra.values() for e in es if e is not None), default=0)
    with blas_threads(1, enabled=small_width(width)):
        for j in range(len(sites)):
            fits = fit_layer([spectra[id(sub)][j] for _, sub in members], min(n_eff),
                             first.adapter.rank_bound(sites[j]))
            for i, fit in enumerate(fits):
                alpha[i, j], pr[i, j], r2[i, j] = fit
    inputs = np.stack([r[4] for r in runs])
    return FamilyMeasurements(
        rates=np.array([r for r, _ in members], dtype=float),
        retained=retained(np.stack([r[1] for r in runs]), clean, chance, higher),
        alpha=alpha, participation=pr, clean=clean, chance=chance,
        sites=tuple(s.name for s in sites), test_rates=tuple(test_rates), metric=metric,
        higher_is_better=higher, r2=r2,
        noise=retained(np.stack([r[2] for r in runs]), clean, chance, higher),
        ablation=retained(np.stack([r[3] for r in runs]), clean, chance, higher),
        input_dropout=None if np.isnan(inputs).all() else retained(inputs, clean, chance, higher),
    )


def precision(per_group: np.ndarray, positions: np.ndarray | None, probe: Any) -> dict[str, Any]:
    """How precisely the runs measured each layer's loss increase: its standard error over the
    probe's groups (sequences, inputs), and how many adjacent layers' differences exceed twice
    their paired standard error (the statistic ranks those differences); which positions were
    scored."""
    n = per_group.shape[1]
    se = per_group.std(axis=1, ddof=1) / np.sqrt(n) if n > 1 else np.full(per_group.shape[0], np.nan)
    diff = np.diff(per_group, axis=0)
    diff_se = diff.std(axis=1, ddof=1) / np.sqrt(n) if n > 1 else np.full(diff.shape[0], np.nan)
    resolved = int(np.sum(np.abs(diff.mean(axis=1)) > 2 * diff_se))
    out: dict[str, Any] = {"increase_se_per_layer": se.tolist(), "adjacent_differences_resolved": resolved,
                           "adjacent_differences": int(diff.shape[0])}
    if positions is not None:
        stride = int(positions[1] - positions[0]) if len(positions) > 1 else 1
        out["scored_positions"] = f"every {stride}th position (0, {stride}, ...): {len(positions)} of {probe.inputs.shape[1]}"
    return out


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def measure_single(
    subject: Any, *, rng: np.random.Generator, q: float = SINGLE_RATE, batch_size: int = 8
) -> tuple[list[Any], np.ndarray, dict[str, Any]]:
    """(per-layer SiteData at the unit site, loss increase [L, samples], details) of one model:
    each layer in turn gets unit dropout at rate q; the increase is paired with the kept samples
    of the inputs measured. Inputs are measured batch by batch in probe order until the
    differences between adjacent layers' increases are reliable enough for the statistic
    (`analyses.c5.enough_groups`), or the probe ends."""
    probe = subject.probe()
    kind = unit_site_kind(subject.adapter)
    with compute_threads(subject.loaded.model):
        layers = subject.capture().get_kind(kind)
        task = task_for(subject.loaded, probe, representation=True)
        generators = [torch_generator(rng) for _ in layers]  # one per layer, drawn in layer order
        positions = scored_positions(probe)
        n_groups = int(probe.inputs.shape[0])
        clean, runs = score_layers(subject.loaded, probe, task, [d.site for d in layers], q, generators,
                                   batch_size=batch_size, positions=positions,
                                   enough=lambda so_far: enough_groups(so_far, n_groups))
        per_group = np.stack([run.loss - clean.loss for run in runs])  # [L, sequences or inputs run]
        increase = np.stack([per_sample(g, probe) for g in per_group])
    extra = {"task": task.kind, "clean_loss": float(clean.loss.mean()), "clean_metric": clean.mean_metric,
             "metric": task.metric, "unit_site": kind, **precision(per_group, positions, probe),
             "groups_measured": f"{per_group.shape[1]} of {n_groups}",
             "difference_reliability": _finite_or_none(difference_reliability(per_group))}
    if task.kind == "represent":
        pooling = subject.adapter.pooling
        extra["semantic_change"] = (
            f"the sentence embedding, {pooling.describe()} (cosine distance)" if pooling is not None else
            "the final hidden state at every real token (cosine distance, mean per sequence; the model has no "
            "output head)")
    return layers, increase, extra
