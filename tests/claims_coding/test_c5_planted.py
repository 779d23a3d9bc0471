"""C5 on planted ground truth: a family whose redundancy is built in must PASS; a family whose
"rates" are shuffled labels of one and the same model must (almost) never PASS."""

from __future__ import annotations

import numpy as np
import pytest
from coding_planted import (
    COPIES,
    RATES,
    alpha_layers,
    correlated_steps,
    planted_probe,
    redundant_net,
    subject_of,
    walk_profile,
)

from polyaudit.analyses import c5
from polyaudit.interventions.dropout_runs import measure_family
from polyaudit.verdict import Status, decide

N_BOOT = 2000
N_PERM = 2000


@pytest.fixture(scope="module")
def probe():  # type: ignore[no-untyped-def]
    return planted_probe(0)


def test_planted_redundancy_passes(probe) -> None:  # type: ignore[no-untyped-def]
    """Rate level i codes 12 / k_i features in k_i copies each (k = 1, 2, 3, 4, 6; fixed width), each
    copy reading its own copy of the feature in the input: more copies survive unit dropout, noise,
    ablation of the strongest units and input dropout better, and code fewer independent directions
    (alpha down). Every prediction holds by construction at both layers."""
    members = [(r, subject_of(redundant_net(k, seed=s), probe, f"k{k}-s{s}"))
               for r, k in zip(RATES, COPIES, strict=True) for s in range(3)]
    measured = measure_family(members, rng=np.random.default_rng(0))
    assert measured.retained.shape == (15, 2, len(c5.TEST_RATES))
    evidence = c5.SPEC.adjust(c5.family_evidence(measured, n_boot=N_BOOT, n_perm=N_PERM, rng=np.random.default_rng(1)))
    per_layer = ("robustness", "noise", "ablation", "alpha")
    assert set(evidence) == {f"{s}:blocks.{i}.resid" for s in per_layer for i in (0, 1)} | {"input:blocks.0.resid"}
    for key, ev in evidence.items():
        verdict = decide(ev)
        assert verdict.status is Status.PASS, (key, verdict.reason)
        assert ev.p_adj is not None and ev.n == 15
    rob = evidence["robustness:blocks.0.resid"]
    assert rob.effect > 0.8 and evidence["alpha:blocks.0.resid"].effect < -0.8
    details = rob.details
    assert details["capacity_bound"] == pytest.approx([1 - q for q in c5.TEST_RATES])
    assert set(details["retained_by_train_rate"]) == {f"{r:g}" for r in RATES}
    assert details["clean_bound_by_train_rate"]["0.8"] == pytest.approx(0.2)
    assert details["manipulation_check"] and "MANIPULATION CHECK" in rob.notes
    assert not evidence["noise:blocks.0.resid"].details["manipulation_check"]
    assert "derived by polyaudit" in evidence["alpha:blocks.0.resid"].notes


def test_shuffled_labels_of_identical_models_rarely_pass(probe) -> None:  # type: ignore[no-untyped-def]
    """15 copies of ONE model under shuffled rate labels: robustness differs only by test-time mask
    and noise draws, and alpha and the (deterministic) ablation not at all (their rows are
    INCONCLUSIVE: no effect can be estimated, Spearman is undefined). At most 1 of 12 seeds may PASS
    any row."""
    same = subject_of(redundant_net(2), probe, "k2")
    passed = 0
    for seed in range(12):
        rng = np.random.default_rng(seed)
        rates = rng.permutation(np.repeat(RATES, 3))
        measured = measure_family([(float(r), same) for r in rates], rng=rng)
        evidence = c5.SPEC.adjust(c5.family_evidence(measured, n_boot=N_BOOT, n_perm=N_PERM, rng=rng))
        status = {k: decide(ev).status for k, ev in evidence.items()}
        undefined = [(decide(ev), ev.effect) for k, ev in evidence.items() if k.startswith(("alpha", "ablation"))]
        assert all(v.status is Status.INCONCLUSIVE and "Spearman is undefined" in v.reason and effect != effect
                   for v, effect in undefined), status
        passed += any(v is Status.PASS for v in status.values())
    assert passed <= 1


def test_pure_noise_family_rarely_passes() -> None:
    """The statistics alone, on i.i.d. robustness and alpha values under 5 rates x 3 seeds and three
    layers: at most 1 of 20 seeds PASSes any row."""
    passed = 0
    for seed in range(20):
        rng = np.random.default_rng(1000 + seed)
        measured = c5.FamilyMeasurements(
            rates=np.repeat(RATES, 3), retained=rng.normal(0.7, 0.05, (15, 3, 4)),
            alpha=rng.normal(-1, 0.1, (15, 3)), participation=rng.uniform(5, 10, (15, 3)),
            clean=np.full(15, 0.9), chance=0.1, sites=("a", "b", "c"))
        evidence = c5.SPEC.adjust(c5.family_evidence(measured, n_boot=N_BOOT, n_perm=N_PERM, rng=rng))
        passed += any(decide(ev).status is Status.PASS for ev in evidence.values())
    assert passed <= 1


@pytest.mark.parametrize(("order", "expected"), [(1, Status.PASS), (-1, Status.FAIL)])
def test_single_checkpoint_statistic_on_planted_layers(order: int, expected: Status) -> None:
    """12 layers whose alpha and loss increase change together from layer to layer (changes with
    Pearson r 0.95, same sign: PASS; opposite sign: FAIL)."""
    rng = np.random.default_rng(0)
    da, dl = correlated_steps(11, 0.95, rng)
    alphas = walk_profile(da, 0.1, -1.75)
    layers = alpha_layers(alphas, 1000, rng)
    increase = walk_profile(order * dl, 0.03, 0.3)[:, None] + 0.05 * rng.standard_normal((12, 1000))
    ev = c5.SPEC.adjust({"unit": c5.single_evidence(layers, increase, site="resid", rng=rng)})["unit"]
    assert [row["alpha"] for row in ev.details["layers"]] == pytest.approx(alphas, abs=0.1)
    assert ev.n == 11 and ev.details["exact"] == [False, False] and "corollary" in ev.notes
    assert decide(ev).status is expected, decide(ev).reason


def test_single_checkpoint_ignores_a_shared_depth_trend() -> None:
    """alpha and the loss increase both rise with depth, their layer-to-layer wiggles unrelated:
    the levels correlate perfectly (what version 1 tested), the changes do not, and no PASS."""
    rng = np.random.default_rng(2)
    alphas = np.linspace(-2.4, -1.1, 8) + 0.03 * rng.standard_normal(8)
    layers = alpha_layers(alphas, 1000, rng)
    increase = (np.linspace(0.1, 0.4, 8) + 0.01 * rng.standard_normal(8))[:, None] + np.zeros((8, 1000))
    ev = c5.SPEC.adjust({"unit": c5.single_evidence(layers, increase, site="resid", rng=rng)})["unit"]
    assert ev.details["rho_levels"] == pytest.approx(1.0)
    assert decide(ev).status is not Status.PASS


def test_four_layers_cannot_pass() -> None:
    rng = np.random.default_rng(1)
    layers = alpha_layers((-2.5, -2.0, -1.8, -1.0), 500, rng)
    increase = np.array([0.1, 0.3, 0.35, 0.6])[:, None] + np.zeros((4, 500))
    ev = c5.single_evidence(layers, increase, site="resid", rng=rng)
    assert ev.ci == (-1.0, 1.0) and "cannot reach significance" in ev.notes
    assert decide(ev).status is Status.INCONCLUSIVE


def test_retained_is_chance_normalised() -> None:
    clean = np.array([0.9, 0.1, 0.5])  # the second model is at chance
    perf = np.array([[0.5, 0.1], [0.1, 0.1], [0.5, 0.3]])
    r = c5.retained(perf, clean, chance=0.1, higher_is_better=True)
    assert r[0] == pytest.approx([0.5, 0.0]) and np.isnan(r[1]).all() and r[2] == pytest.approx([1.0, 0.5])
    loss = c5.retained(np.array([[0.2]]), np.array([0.1]), chance=0.5, higher_is_better=False)
    assert loss[0, 0] == pytest.approx(0.75)  # (0.5 - 0.2) / (0.5 - 0.1)
