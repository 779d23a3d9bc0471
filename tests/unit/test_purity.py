"""Cluster purity (polyaudit.measures.purity) and the four partitions of C1 (measures.clustering)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyaudit.errors import PolyauditError
from polyaudit.measures import clustering as cl
from polyaudit.measures.purity import (
    adjusted_mutual_information,
    conditional_entropy,
    contingency,
    label_entropy,
    permuted_entropies,
    resample_weights,
    weighted_entropies,
)

ids_and_labels = st.integers(1, 300).flatmap(
    lambda n: st.tuples(st.lists(st.integers(0, 6), min_size=n, max_size=n),
                        st.lists(st.integers(0, 4), min_size=n, max_size=n)))


def _direct(clusters: np.ndarray, labels: np.ndarray) -> float:
    h = 0.0
    for c in np.unique(clusters):
        y = labels[clusters == c]
        p = np.unique(y, return_counts=True)[1] / y.size
        h += y.size / labels.size * -(p * np.log2(p)).sum()
    return h


@settings(max_examples=60, deadline=None)
@given(ids_and_labels)
def test_conditional_entropy_is_the_textbook_formula(pair: tuple[list[int], list[int]]) -> None:
    c, y = (np.asarray(v) for v in pair)
    h = conditional_entropy(c, y)
    assert h == pytest.approx(_direct(c, y), abs=1e-12)
    assert -1e-12 <= h <= label_entropy(y) + 1e-12  # conditioning never adds uncertainty
    assert conditional_entropy(c + 10, (y + 3) * 2) == pytest.approx(h, abs=1e-12)  # ids are names


def test_pure_and_uninformative_clusterings() -> None:
    y = np.repeat(np.arange(4), 25)
    assert conditional_entropy(y * 7, y) == 0.0
    assert conditional_entropy(np.zeros(100), y) == pytest.approx(2.0)
    assert adjusted_mutual_information(y, y) == pytest.approx(1.0)
    assert contingency(y, y).trace() == 100


@settings(max_examples=30, deadline=None)
@given(ids_and_labels, st.integers(0, 2**31 - 1))
def test_weighted_and_permuted_tables_agree_with_direct_recounts(pair: tuple[list[int], list[int]], seed: int) -> None:
    c, y = (np.asarray(v) for v in pair)
    rng = np.random.default_rng(seed)
    idx = [rng.integers(0, c.size, c.size) for _ in range(3)]
    weights = resample_weights(idx, c.size)
    np.testing.assert_allclose(weighted_entropies(c, y, weights),
                               [conditional_entropy(c[i], y[i]) for i in idx], atol=1e-12)
    perms = np.stack([rng.permutation(c.size) for _ in range(3)])
    np.testing.assert_allclose(permuted_entropies(c, y, perms),
                               [conditional_entropy(c, y[p]) for p in perms], atol=1e-12)


def test_resample_weights_take_cluster_bootstrap_rows_of_any_length() -> None:
    w = resample_weights([np.array([0, 0, 2]), np.array([1])], 3)
    np.testing.assert_array_equal(w, [[2, 0, 1], [0, 1, 0]])


def test_cluster_sizes_flag_one_giant_cluster() -> None:
    ids = np.array([0] * 60 + [1] * 20 + [2] * 20)
    sizes = cl.cluster_sizes(ids, 3)
    assert sizes.sizes == (60, 20, 20) and sizes.largest_fraction == 0.6 and sizes.degenerate()
    assert not cl.cluster_sizes(np.arange(100) % 4, 4).degenerate()
    assert sizes.summary()["n_clusters"] == 3


def test_polytope_clusters_recover_planted_codes() -> None:
    rng = np.random.default_rng(0)
    centres = rng.random((4, 64)) < 0.5
    y = np.repeat(np.arange(4), 50)
    codes = centres[y] ^ (rng.random((200, 64)) < 0.05)  # 5% of bits flipped
    ids = cl.polytope_clusters(codes, 4, np.random.default_rng(1))
    assert conditional_entropy(ids, y) == 0.0


def test_neuron_clusters_use_k_units() -> None:
    acts = np.random.default_rng(0).standard_normal((300, 20))
    ids = cl.neuron_clusters(acts, 5)
    assert np.unique(ids).size == 5
    with pytest.raises(PolyauditError):
        cl.neuron_clusters(acts[:, :3], 5)


def test_random_hyperplanes_keep_each_units_balance() -> None:
    rng = np.random.default_rng(0)
    acts = rng.standard_normal((400, 10))
    frac = np.linspace(0.0, 1.0, 10)
    codes = cl.random_hyperplane_codes(acts, frac, rng)
    np.testing.assert_array_equal(codes.sum(axis=0), np.rint(frac * 400))


def test_direction_clusters_ignore_scale() -> None:
    rng = np.random.default_rng(0)
    acts = np.abs(rng.standard_normal((120, 6)))
    scaled = acts * rng.uniform(0.1, 10.0, (120, 1))
    a = cl.direction_clusters(acts, 3, np.random.default_rng(2))
    b = cl.direction_clusters(scaled, 3, np.random.default_rng(2))
    assert adjusted_mutual_information(a, b) > 0.99
