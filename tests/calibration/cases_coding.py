"""Calibration settings of the coding-theory claims (C4, C5, C6): nulls, planted effects, coverage.

Depth trends (C4, C5 single, C6) are judged with the layers as the replicates, so their nulls are
the depth profiles that fooled the earlier versions: per-layer values in random order, independent
random-walk profiles of the two quantities, a negligible monotone drift, a random-init residual
stream whose alphas differ by a few hundredths. Planted effects vary with the seed; coverage uses
a fixed effect (the harness's truth is one number per row) on subjects that vary with the seed.
Subjects are small (32-unit layers; C5 family: 15 hand-built two-layer nets) so that the suite
fits its CI budget; each family is measured once per seed and serves its null and planted settings.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
from calibration_subjects import permuted_fourier_layers
from coding_planted import (
    COPIES,
    RATES,
    alpha_layers,
    correlated_steps,
    planted_probe,
    random_walk,
    redundant_net,
    residual_layers,
    shaped_fourier_layers,
    spearman_of_gaussian,
    subject_of,
    walk_profile,
)
from harness import Build, Rows, Setting, audit_rng

from polyaudit.analyses import c4, c5, c6
from polyaudit.profiles import Profile
from polyaudit.serial import stable_int

DIGITS_N = 1797
LOG_ACTION = (float(np.log(0.35)), float(np.log(1.6)))  # relative actions every alpha in [-2.5, -1] can reach
COVER_SLOPE = 0.3  # C4 coverage: alpha -1.15 .. -0.85 over the depth, as the earlier planted subject
COVER_R = 0.9  # C5 single, C6 coverage: Pearson r of the layer-to-layer changes


def n_samples(profile: Profile) -> int:
    return min(profile.max_samples, DIGITS_N)


# ---- C4 ---------------------------------------------------------------------------------------


def _c4_run(layers: list, seed: int, profile: Profile, correction: str) -> Rows:
    ev = c4.alpha_depth(layers, site="resid", n_boot=profile.n_boot, rng=audit_rng(seed, c4.CLAIM, "resid"))
    return c4.SPEC.adjust({"resid": ev}, correction)


def _c4(kind: str) -> Build:
    def build(seed: int, profile: Profile, correction: str) -> Rows:
        rng = np.random.default_rng([seed, 40, stable_int(kind)])
        n = n_samples(profile)
        if kind == "random order":  # independent exponents in no order
            layers = alpha_layers(rng.uniform(-1.3, -0.7, 8), n, rng)
        elif kind == "drift":  # a negligible monotone trend: 0.04 over the whole depth
            layers = alpha_layers(-1.02 + 0.04 * np.linspace(0, 1, 8), n, rng)
        elif kind == "encoder":  # random-init residual stream, same samples at every layer
            layers = residual_layers(6, n, rng)
        else:  # planted slope (varies with the seed; coverage: COVER_SLOPE) plus layer scatter 0.03
            slope = COVER_SLOPE if kind == "coverage" else rng.choice([-1, 1]) * rng.uniform(0.25, 0.6)
            x = np.linspace(0, 1, 8)
            layers = alpha_layers(-1.0 + slope * (x - 0.5) + 0.03 * rng.standard_normal(8), n, rng)
        return _c4_run(layers, seed, profile, correction)

    return build


# ---- C5 single checkpoint -------------------------------------------------------------------------


def _c5_single(kind: str, n_layers: int = 8) -> Build:
    def build(seed: int, profile: Profile, correction: str) -> Rows:
        rng = np.random.default_rng([seed, 50, stable_int(kind), n_layers])
        if kind == "random order":
            alphas, means = rng.uniform(-2.5, -1.0, n_layers), rng.uniform(0.1, 0.4, n_layers)
        elif kind == "random walks":
            alphas = random_walk(n_layers, 0.1, rng, rng.uniform(-2.2, -1.3), (-2.5, -1.0))
            means = random_walk(n_layers, 0.03, rng, 0.25, (0.02, 0.6))
        else:  # changes in loss increase follow changes in alpha with correlation r
            r = COVER_R if kind == "coverage" else rng.uniform(0.85, 0.95)
            da, dl = correlated_steps(n_layers - 1, r, rng)
            alphas, means = walk_profile(da, 0.1, -1.75), walk_profile(dl, 0.03, 0.3)
        layers = alpha_layers(alphas, n_samples(profile), rng)
        increase = means[:, None] + 0.05 * rng.standard_normal((n_layers, n_samples(profile)))
        ev = c5.single_evidence(layers, increase, site="resid", rng=audit_rng(seed, c5.CLAIM, "bootstrap"))
        return c5.SPEC.adjust({"unit": ev}, correction)

    return build


SEQ_GROUPS, SEQ_BATCH, SEQ_NOISE = 64, 8, 0.01  # sequences of a probe, batch size, per-sequence noise SD


def _c5_sequential(kind: str, n_layers: int = 16) -> Build:
    """The single-checkpoint row measured as a model is: each layer's increase per sequence is its
    level plus noise (SD SEQ_NOISE, a third of a typical layer-to-layer step), and sequences are
    added batch by batch until `enough_groups` says the differences are reliable (46 of 64 on average
    here, 16 to 64); the row sees only the sequences measured."""

    def build(seed: int, profile: Profile, correction: str) -> Rows:
        rng = np.random.default_rng([seed, 51, stable_int(kind), n_layers])
        if kind == "random walks":
            alphas = random_walk(n_layers, 0.1, rng, rng.uniform(-2.2, -1.3), (-2.5, -1.0))
            means = random_walk(n_layers, 0.03, rng, 0.25, (0.02, 0.6))
        else:
            r = COVER_R if kind == "coverage" else rng.uniform(0.85, 0.95)
            da, dl = correlated_steps(n_layers - 1, r, rng)
            alphas, means = walk_profile(da, 0.1, -1.75), walk_profile(dl, 0.03, 0.3)
        per_group = means[:, None] + SEQ_NOISE * rng.standard_normal((n_layers, SEQ_GROUPS))
        m = next(m for m in range(SEQ_BATCH, SEQ_GROUPS + 1, SEQ_BATCH)
                 if c5.enough_groups(per_group[:, :m], SEQ_GROUPS))
        layers = alpha_layers(alphas, n_samples(profile), rng)
        ev = c5.single_evidence(layers, per_group[:, :m], site="resid", rng=audit_rng(seed, c5.CLAIM, "bootstrap"))
        return c5.SPEC.adjust({"unit": ev}, correction)

    return build


# ---- C6 ---------------------------------------------------------------------------------------


def _c6(kind: str, n_layers: int = 8) -> Build:
    def build(seed: int, profile: Profile, correction: str) -> Rows:
        rng = np.random.default_rng([seed, 60, stable_int(kind), n_layers])
        if kind == "frequencies at random":  # alpha a random walk, each layer's frequencies in random order
            alphas = random_walk(n_layers, 0.12, rng, rng.uniform(-2.2, -1.3), (-2.5, -1.0))
            layers, trajs = permuted_fourier_layers(tuple(alphas), rng, n=400)
        else:
            if kind == "random order":
                alphas, log_r = rng.uniform(-2.5, -1.0, n_layers), rng.uniform(*LOG_ACTION, n_layers)
            elif kind == "random walks":
                alphas = random_walk(n_layers, 0.12, rng, rng.uniform(-2.2, -1.3), (-2.5, -1.0))
                log_r = random_walk(n_layers, 0.15, rng, rng.uniform(*LOG_ACTION), LOG_ACTION)
            else:  # changes in log relative action follow changes in alpha with correlation r
                r = COVER_R if kind == "coverage" else rng.uniform(0.85, 0.95)
                da, dr = correlated_steps(n_layers - 1, r, rng)
                alphas, log_r = walk_profile(da, 0.12, -1.75), walk_profile(dr, 0.12, float(np.mean(LOG_ACTION)))
            layers, trajs, _ = shaped_fourier_layers(alphas, log_r, rng, n=400, n_candidates=1500)
        ev = c6.action_alpha(layers, trajs, site="resid", rng=audit_rng(seed, c6.CLAIM, "resid"))
        return c6.SPEC.adjust({"resid": ev}, correction)

    return build


# ---- C5 family --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _planted_family(seed: int, batch_size: int) -> c5.FamilyMeasurements:
    """The planted family of tests/claims_coding, measured once per seed (training rate level i <->
    COPIES[i] copies of each feature, 3 seeds per rate)."""
    from polyaudit.interventions.dropout_runs import measure_family

    probe = planted_probe(seed)
    members = [(r, subject_of(redundant_net(k, probe_seed=seed, seed=1000 * seed + j), probe, f"k{k}-s{j}"))
               for r, k in zip(RATES, COPIES, strict=True) for j in range(3)]
    return measure_family(members, rng=audit_rng(seed, c5.CLAIM, "family", "unit-dropout"), batch_size=batch_size)


def _c5_family(shuffle_rates: bool) -> Build:
    """The planted family; null: the same 15 models with their rates shuffled (the measurement of a
    model does not depend on its label, so one measurement per seed serves both)."""

    def build(seed: int, profile: Profile, correction: str) -> Rows:
        measured = _planted_family(seed, profile.batch_size)
        if shuffle_rates:
            measured = dataclasses.replace(measured, rates=np.random.default_rng([seed, 5]).permutation(measured.rates))
        return c5.SPEC.adjust(c5.family_evidence(measured, n_boot=profile.n_boot, n_perm=profile.n_perm,
                                                 rng=audit_rng(seed, c5.CLAIM, "family", "bootstrap")), correction)

    return build


FAMILY_SLOPE = 0.05  # coverage: each statistic rises by 0.05 per rate level, model noise SD 0.05
FAMILY_SITES = ("a", "b")


def _family_values(rng: np.random.Generator, levels: np.ndarray) -> np.ndarray:
    return 0.7 + FAMILY_SLOPE * levels + 0.05 * rng.standard_normal(levels.size)


@functools.cache
def family_truth() -> float:
    """Spearman(rate, value) of the coverage subject's population: on 40,000 models per rate."""
    from polyaudit.stats import spearman

    levels = np.repeat(np.arange(len(RATES)), 40_000).astype(float)
    return spearman(levels, _family_values(np.random.default_rng(0), levels))


def _c5_family_coverage(seed: int, profile: Profile, correction: str) -> Rows:
    """Measurements drawn directly (the statistic's coverage, not the models'): 5 rates x 3 models,
    every robustness statistic rising by FAMILY_SLOPE per rate level, alpha falling as much."""
    rng = np.random.default_rng([seed, 55])
    levels = np.repeat(np.arange(len(RATES)), 3).astype(float)
    m, n_sites = levels.size, len(FAMILY_SITES)

    def grid(k: int) -> np.ndarray:
        return np.stack([np.stack([_family_values(rng, levels)] * k, axis=1) for _ in range(n_sites)], axis=1)

    measured = c5.FamilyMeasurements(
        rates=np.repeat(RATES, 3), retained=grid(len(c5.TEST_RATES)), alpha=-1.0 - grid(1)[:, :, 0] + 0.7,
        participation=rng.uniform(5, 10, (m, n_sites)), clean=np.full(m, 0.9), chance=0.1, sites=FAMILY_SITES,
        noise=grid(len(c5.NOISE_SCALES)), ablation=grid(len(c5.ABLATE_FRACTIONS)),
        input_dropout=grid(len(c5.INPUT_RATES))[:, 0, :])
    return c5.SPEC.adjust(c5.family_evidence(measured, n_boot=profile.n_boot, n_perm=profile.n_perm,
                                             rng=audit_rng(seed, c5.CLAIM, "coverage")), correction)


SETTINGS: tuple[Setting, ...] = (
    Setting("C4", "null", "random order", _c4("random order"),
            what="8 layers, alphas drawn independently from U(-1.3, -0.7)"),
    Setting("C4", "null", "drift 0.04", _c4("drift"), what="8 layers, alpha -1.02 .. -0.98 (0.04 over the depth)"),
    Setting("C4", "null", "random-init encoder", _c4("encoder"),
            what="6-layer random residual stream (same samples; alphas differ by ~0.02)"),
    Setting("C4", "planted", "alpha slope", _c4("planted"), profile="default", seeds=30,
            what="8 layers, slope +-U(0.25, 0.6) per unit depth, layer scatter 0.03"),
    Setting("C4", "coverage", "alpha slope 0.3", _c4("coverage"), profile="default", truth={"resid": COVER_SLOPE},
            what="8 layers, slope 0.3 per unit depth, layer scatter 0.03"),
    Setting("C5 single", "null", "random order", _c5_single("random order"),
            what="8 layers, alpha and loss increase drawn independently per layer"),
    Setting("C5 single", "null", "random walks", _c5_single("random walks"),
            what="8 layers, alpha and loss increase independent random walks over depth"),
    Setting("C5 single", "null", "random walks 24", _c5_single("random walks", 24),
            what="24 layers, independent random walks"),
    Setting("C5 single", "planted", "changes correlate", _c5_single("planted", 16), profile="default", seeds=30,
            what="16 layers, layer-to-layer changes with Pearson r ~ U(0.85, 0.95)"),
    Setting("C5 single", "coverage", "changes r 0.9", _c5_single("coverage", 16), profile="default",
            truth={"unit": spearman_of_gaussian(COVER_R)}, what="16 layers, changes with Pearson r 0.9"),
    Setting("C5 single", "null", "random walks, sequential", _c5_sequential("random walks"),
            what="16 layers, independent random walks; increases measured per sequence (noise SD 0.01) until reliable"),
    Setting("C5 single", "planted", "changes correlate, sequential", _c5_sequential("planted"), profile="default",
            seeds=30, what="16 layers, changes with r ~ U(0.85, 0.95); increases measured per sequence until reliable"),
    # 300 seeds: at 60 this setting read 52/60 (CI 75-94%), which cannot tell the rule from the
    # whole probe; on the same 300 subjects: no noise 281, the whole probe 280, the rule 279, a
    # fixed 16 sequences 271 covered
    Setting("C5 single", "coverage", "changes r 0.9, sequential", _c5_sequential("coverage"), profile="default",
            seeds=300, truth={"unit": spearman_of_gaussian(COVER_R)},
            what="16 layers, changes with r 0.9; increases measured per sequence (noise SD 0.01) until reliable"),
    Setting("C6", "null", "frequencies at random", _c6("frequencies at random"),
            what="8 layers, alpha a random walk, each layer's variance ranks at random frequencies"),
    Setting("C6", "null", "random order", _c6("random order"),
            what="8 layers, alpha and relative action drawn independently per layer"),
    Setting("C6", "null", "random walks", _c6("random walks"),
            what="8 layers, alpha and log relative action independent random walks"),
    Setting("C6", "null", "random walks 24", _c6("random walks", 24), what="24 layers, independent random walks"),
    Setting("C6", "planted", "changes correlate", _c6("planted", 16), profile="default", seeds=30,
            what="16 layers, changes of alpha and log action with Pearson r ~ U(0.85, 0.95)"),
    Setting("C6", "coverage", "changes r 0.9", _c6("coverage", 16), profile="default",
            truth={"resid": spearman_of_gaussian(COVER_R)}, what="16 layers, changes with Pearson r 0.9"),
    Setting("C5 family", "null", "rates at random", _c5_family(shuffle_rates=True),
            what="the planted family with its rates shuffled over the models"),
    Setting("C5 family", "planted", "redundancy by rate", _c5_family(shuffle_rates=False), seeds=30,
            what="rate level i codes each feature in 1, 2, 3, 4, 6 copies, each reading its own input copy"),
    Setting("C5 family", "coverage", "rising by rate", _c5_family_coverage, rows=("noise:a",),
            truth={"noise:a": family_truth()},
            what="measurements drawn per model: +0.05 per rate level, SD 0.05 (every family row is the same computation)"),
)
