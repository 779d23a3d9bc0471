"""Own-versus-mismatch alignment (C2/C3 helper) and C6's layer-permutation p."""

from __future__ import annotations

import math

import numpy as np
import pytest

from polyaudit.analyses import c6
from polyaudit.analyses.alignment import AlignmentTest, alignment_matrix, alignment_test, contrast
from polyaudit.errors import PolyauditError
from polyaudit.stats import spearman


def _test(cross: np.ndarray, change: np.ndarray, seed: int) -> AlignmentTest:
    a, b = np.random.default_rng(seed).spawn(2)
    return alignment_test(cross, change, n_boot=500, n_perm=999, rng_boot=a, rng_perm=b)


def test_matrix_entries_are_spearman_correlations() -> None:
    rng = np.random.default_rng(0)
    c, s = rng.integers(0, 4, (5, 9)), rng.random((5, 9))
    c[:, 0] = 7  # rows vary
    r = alignment_matrix(c, s)
    for i in range(5):
        for j in range(5):
            assert r[i, j] == pytest.approx(spearman(c[j].astype(float), s[i]))
    effect, own, mismatch = contrast(r)
    assert own == pytest.approx(np.mean(np.diag(r)))
    assert mismatch == pytest.approx((r.sum() - np.trace(r)) / 20)
    assert effect == pytest.approx(own - mismatch)


def test_shared_geometry_alone_gives_no_effect() -> None:
    """Both quantities grow along the grid on every polyline (positive own Spearman by
    construction), independently of each other: own alignment = mismatch, p not small."""
    rng = np.random.default_rng(1)
    steps = np.arange(12.0)
    cross = rng.poisson(0.5 * steps, (60, 12))
    change = steps * (1 + rng.random((60, 12)))
    t = _test(cross, change, 1)
    assert t.own > 0.3  # the old per-polyline statistic would call this an effect
    assert abs(t.effect) < 0.1 and t.p > 0.05
    assert t.ci[0] <= t.effect <= t.ci[1]


def test_own_boundaries_driving_the_change_give_an_effect() -> None:
    rng = np.random.default_rng(2)
    steps = np.arange(12.0)
    cross = rng.poisson(0.5 * steps, (60, 12))
    change = steps + 3 * cross + rng.random((60, 12))
    t = _test(cross, change, 2)
    assert t.effect > 0.1 and t.ci[0] > 0 and t.p < 0.01 and t.n_perm >= 1999


def test_constant_rows_are_refused() -> None:
    with pytest.raises(PolyauditError):
        alignment_matrix(np.zeros((4, 5)), np.ones((4, 5)))


@pytest.mark.parametrize("n_layers", [4, 5, 8])
def test_layer_permutation_is_exact_up_to_eight_layers(n_layers: int) -> None:
    alpha = np.linspace(-2.0, -1.0, n_layers)
    p, used, exact = c6.layer_permutation_p(alpha + 3.0, alpha, np.random.default_rng(0))
    assert exact and used == math.factorial(n_layers)
    assert p == pytest.approx(2 / math.factorial(n_layers)) == pytest.approx(c6.min_layer_p(n_layers))


def test_layer_permutation_beyond_eight_layers_is_seeded_shuffles() -> None:
    alpha = np.linspace(-2.0, -1.0, 10)
    p, used, exact = c6.layer_permutation_p(-alpha, alpha, np.random.default_rng(0))
    assert not exact and used == c6.N_LAYER_PERM and p == pytest.approx(1 / (c6.N_LAYER_PERM + 1))
    again = c6.layer_permutation_p(np.sin(alpha * 7), alpha, np.random.default_rng(3))
    assert again == c6.layer_permutation_p(np.sin(alpha * 7), alpha, np.random.default_rng(3))
