"""C5 on planted ground truth: a family whose redundancy is built in must PASS; a family whose
"rates" are shuffled labels of one and the same model must (almost) never PASS."""

from __future__ import annotations

import numpy as np
import pytest
from coding_planted import COPIES, RATES, planted_probe, redundant_net, subject_of

from polyaudit.analyses import c5
from polyaudit.capture import SiteData
from polyaudit.interventions.dropout_runs import measure_family
from polyaudit.models.base import Site
from polyaudit.verdict import Status, decide

N_BOOT = 200
N_PERM = 200


@pytest.fixture(scope="module")
def probe():  # type: ignore[no-untyped-def]
    return planted_probe(0)


def test_planted_redundancy_passes(probe) -> None:  # type: ignore[no-untyped-def]
    """Rate level i codes 12 / k_i features in k_i copies each (k = 1, 2, 3, 4, 6; fixed width):
    more copies survive unit dropout better (robustness up) and code fewer independent directions
    (alpha down). Both predictions hold by construction at both layers."""
    members = [(r, subject_of(redundant_net(k, seed=s), probe, f"k{k}-s{s}"))
               for r, k in zip(RATES, COPIES, strict=True) for s in range(3)]
    measured = measure_family(members, rng=np.random.default_rng(0))
    assert measured.retained.shape == (15, 2, len(c5.TEST_RATES))
    evidence = c5.SPEC.adjust(c5.family_evidence(measured, n_boot=N_BOOT, n_perm=N_PERM, rng=np.random.default_rng(1)))
    assert set(evidence) == {f"{s}:blocks.{i}.resid" for s in ("robustness", "alpha") for i in (0, 1)}
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


def test_shuffled_labels_of_identical_models_rarely_pass(probe) -> None:  # type: ignore[no-untyped-def]
    """15 copies of ONE model under shuffled rate labels: robustness differs only by test-time mask
    noise, and alpha not at all (its rows are ERROR: Spearman undefined). At most 1 of 20 seeds may
    PASS any row."""
    same = subject_of(redundant_net(2), probe, "k2")
    passed = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        rates = rng.permutation(np.repeat(RATES, 3))
        measured = measure_family([(float(r), same) for r in rates], rng=rng)
        evidence = c5.SPEC.adjust(c5.family_evidence(measured, n_boot=N_BOOT, n_perm=N_PERM, rng=rng))
        status = {k: decide(ev).status for k, ev in evidence.items()}
        assert all(v is Status.ERROR for k, v in status.items() if k.startswith("alpha")), status
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
    """Layers with power-law spectra alpha = -2.5 .. -1 and loss increases that grow (order=1) or
    shrink (order=-1) with alpha: the paired bootstrap gives PASS, respectively FAIL."""
    rng = np.random.default_rng(0)
    n, d = 800, 64
    alphas = (-2.5, -2.0, -1.5, -1.0)
    layers = []
    for i, a in enumerate(alphas):
        x = rng.standard_normal((n, d)) * np.arange(1, d + 1) ** (a / 2)
        site = Site(layer=i, kind="resid", module=f"planted.{i}")
        layers.append(SiteData(site=site, samples=x.astype(np.float32), groups=np.arange(n), labels=None,
                               n_nonfinite=0))
    means = np.array([0.1, 0.2, 0.3, 0.4])[::order]
    increase = means[:, None] + 0.05 * rng.standard_normal((4, n))
    ev = c5.single_evidence(layers, increase, site="resid", n_boot=N_BOOT, rng=rng)
    assert [round(row["alpha"], 1) for row in ev.details["layers"]] == pytest.approx(alphas, abs=0.25)
    assert decide(ev).status is expected, decide(ev).reason


def test_retained_is_chance_normalised() -> None:
    clean = np.array([0.9, 0.1, 0.5])  # the second model is at chance
    perf = np.array([[0.5, 0.1], [0.1, 0.1], [0.5, 0.3]])
    r = c5.retained(perf, clean, chance=0.1, higher_is_better=True)
    assert r[0] == pytest.approx([0.5, 0.0]) and np.isnan(r[1]).all() and r[2] == pytest.approx([1.0, 0.5])
    loss = c5.retained(np.array([[0.2]]), np.array([0.1]), chance=0.5, higher_is_better=False)
    assert loss[0, 0] == pytest.approx(0.75)  # (0.5 - 0.2) / (0.5 - 0.1)
