"""C1's comparison (polyaudit.analyses.c1): K from the units, the paired interval and p, the second K,
findings that are not errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "claims_planted"))

import c1_planted as words

from polyaudit.analyses import c1
from polyaudit.verdict import Status, decide


def test_k_is_set_by_the_units_and_the_second_k_doubles_it() -> None:
    assert c1.choose_k(250, 16) == 8  # labelled:categories: ~250 words, 30 per cluster
    assert c1.choose_k(1024, 10) == 20  # digits: 2 x the classes
    assert c1.choose_k(40, 4) == 2
    assert c1.second_k(8, 250) == 16 and c1.second_k(20, 1024) == 40
    assert c1.second_k(7, 200) == 3  # 2K would leave fewer than 15 units per cluster: K / 2
    assert c1.second_k(3, 60) is None


@pytest.fixture(scope="module")
def planted_rows() -> dict:
    w = words.planted(words.population(0), np.random.default_rng(0))
    return c1.monosemanticity(w.x, w.labels, site="words", groups=w.words, unit="word",
                              rng=np.random.default_rng(1), n_boot=2000, n_perm=1000)


def test_n_counts_units_and_ci_and_p_come_from_the_same_replicates(planted_rows: dict) -> None:
    for ev in planted_rows.values():
        assert ev.n == ev.details["n_units"] == 180 and ev.details["n_samples"] == 540
        assert ev.interval is not None and ev.interval(0.95) == ev.ci
        lo, hi = ev.interval(0.999)
        assert lo < ev.ci[0] and ev.ci[1] < hi
        reps = ev.details["boot_effect"]
        assert ev.details["k"] == 6 and ev.details["k2"] == 12 and ev.min_effect == c1.SESOI
        assert reps and ev.details["p_labels"]["polytope"] < 0.01
        assert (ev.p < 0.05) == (ev.ci[0] > 0 or ev.ci[1] < 0)
        assert decide(c1.SPEC.adjust(planted_rows)[next(iter(planted_rows))]).status is Status.PASS


def _pairs_layer(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """4 labels, 240 units of 2 samples. Codes name the label exactly. Directions come in 8 pairs
    of nearby centres, the two centres of a pair with different labels: K = 8 direction clusters
    merge each pair (mixed), 2K = 16 separate them (pure, as pure as the polytopes)."""
    rng = np.random.default_rng(seed)
    n_units = 240
    centre = rng.integers(0, 16, n_units)  # direction centre of each unit
    label = (centre % 2) * 2 + (centre // 2) % 2  # the two centres of pair j: labels differ
    protos = rng.choice([-1.0, 1.0], size=(4, 16))
    pair_dirs = rng.standard_normal((8, 32)) * 3.0
    offsets = rng.standard_normal((2, 32)) * 0.8
    u = np.repeat(np.arange(n_units), 2)
    bulk = 10.0 + pair_dirs[centre[u] // 2] + offsets[centre[u] % 2] + 0.05 * rng.standard_normal((u.size, 32))
    switch = 0.05 * protos[label[u]]
    return np.concatenate([switch, bulk], axis=1), label[u], u


def test_a_pass_that_flips_at_the_second_k_is_held_back() -> None:
    x, y, u = _pairs_layer(0)
    rows = c1.SPEC.adjust(c1.monosemanticity(x, y, site="pairs", groups=u, rng=np.random.default_rng(0),
                                             n_boot=2000, n_perm=1000))
    ev = rows["direction"]
    assert ev.details["k"] == 8 and ev.details["second_k"]["k"] == 16
    assert ev.effect > 0.5  # at K the polytopes win clearly ...
    assert ev.details["second_k"]["effect"] < c1.SESOI and not ev.details["second_k"]["would_pass"]
    assert "second K=16" in (ev.caveat or "")  # ... but not at 2K: no PASS
    assert decide(ev).status is Status.INCONCLUSIVE


def test_a_baseline_that_cannot_be_built_is_skipped_not_an_error() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 5))  # 5 units: no K = 8 neuron clusters
    rows = c1.monosemanticity(x, rng.integers(0, 4, 400), site="narrow", rng=rng, n_boot=1000, n_perm=1000)
    assert decide(rows["neuron"]).status is Status.SKIPPED and "5 units" in (rows["neuron"].skip or "")
    assert rows["direction"].error is None and rows["random"].error is None


def test_labels_that_vary_within_a_unit_are_permuted_sample_by_sample() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 12))
    units = np.repeat(np.arange(100), 4)
    rows = c1.monosemanticity(x, rng.integers(0, 3, 400), site="mixed", groups=units, rng=rng,
                              n_boot=1000, n_perm=1000)
    assert rows["direction"].details["permuted"].startswith("labels of single samples")
    assert rows["direction"].n == 100


def test_too_few_units_is_an_error_row_with_the_reason() -> None:
    rng = np.random.default_rng(0)
    rows = c1.monosemanticity(rng.standard_normal((300, 8)), rng.integers(0, 3, 300), site="few",
                              groups=np.repeat(np.arange(10), 30), rng=rng, n_boot=100, n_perm=100)
    assert all("units of replication" in (ev.error or "") for ev in rows.values())
