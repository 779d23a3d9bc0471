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
    permuted_unit_entropies,
    unit_bootstrap,
    unit_counts,
    unit_entropies,
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


def _jackknife(c: np.ndarray, y: np.ndarray, u: np.ndarray) -> float:
    """The delete-one-unit jackknife of the plug-in H(label | cluster), written out."""
    ids = np.unique(u)
    h = conditional_entropy(c, y)
    left_out = [conditional_entropy(c[u != j], y[u != j]) for j in ids]
    return ids.size * h - (ids.size - 1) * float(np.mean(left_out))


units_ids_labels = st.integers(3, 40).flatmap(
    lambda m: st.tuples(st.lists(st.integers(1, 4), min_size=m, max_size=m),  # samples per unit
                        st.integers(1, 6), st.integers(1, 4), st.booleans(), st.integers(0, 2**31 - 1)))


@settings(max_examples=40, deadline=None)
@given(units_ids_labels)
def test_unit_entropies_are_the_delete_one_unit_jackknife(case: tuple[list[int], int, int, bool, int]) -> None:
    sizes, k, n_labels, one_label, seed = case
    rng = np.random.default_rng(seed)
    u = np.repeat(np.arange(len(sizes)), sizes)
    c = rng.integers(0, k, u.size)
    y = rng.integers(0, n_labels, len(sizes))[u] if one_label else rng.integers(0, n_labels, u.size)
    uc = unit_counts(c, y, u)
    assert uc.unit_label is not None or not one_label
    assert unit_entropies(uc, np.ones((1, uc.n_units)))[0] == pytest.approx(_jackknife(c, y, u), abs=1e-9)
    # a bootstrap replicate: its draws are its units (a unit drawn twice is two units)
    for w in unit_bootstrap(uc.n_units, 3, rng):
        rows = np.concatenate([np.flatnonzero(u == j) for j in np.repeat(np.arange(uc.n_units), w.astype(int))])
        draws = np.repeat(np.arange(int(w.sum())), [sizes[j] for j in np.repeat(np.arange(uc.n_units), w.astype(int))])
        assert unit_entropies(uc, w[None])[0] == pytest.approx(_jackknife(c[rows], y[rows], draws), abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(units_ids_labels)
def test_permuted_unit_entropies_move_whole_units(case: tuple[list[int], int, int, bool, int]) -> None:
    sizes, k, n_labels, _, seed = case
    rng = np.random.default_rng(seed)
    u = np.repeat(np.arange(len(sizes)), sizes)
    c = rng.integers(0, k, u.size)
    unit_label = rng.integers(0, n_labels, len(sizes))
    uc = unit_counts(c, unit_label[u], u)
    perms = np.stack([rng.permutation(len(sizes)) for _ in range(3)])
    np.testing.assert_allclose(permuted_unit_entropies(uc, perms),
                               [_jackknife(c, unit_label[p][u], u) for p in perms], atol=1e-9)
    with pytest.raises(PolyauditError, match="whole draws"):
        unit_entropies(uc, np.full((1, uc.n_units), 0.5))


def test_jackknife_removes_the_bias_that_depends_on_the_number_of_clusters() -> None:
    """Labels independent of the clusters: the plug-in H falls with the clusters (more cells, fewer
    samples each), so a partition would look purer by having more clusters; the jackknifed H does
    not. Units of 3 samples that share their cluster and label (a word in three sentences): the
    bias is that of the units, not of the samples."""
    rng = np.random.default_rng(0)
    plug: dict[int, list[float]] = {4: [], 16: []}
    jack: dict[int, list[float]] = {4: [], 16: []}
    for _ in range(150):
        u = np.repeat(np.arange(160), 3)
        y = rng.integers(0, 8, 160)[u]
        for k in plug:
            c = rng.integers(0, k, 160)[u]
            plug[k].append(conditional_entropy(c, y))
            jack[k].append(unit_entropies(unit_counts(c, y, u), np.ones((1, 160)))[0])
    assert np.mean(plug[4]) - np.mean(plug[16]) > 0.3  # the plug-in gap: bias alone
    assert abs(np.mean(jack[4]) - np.mean(jack[16])) < 0.05
    assert abs(np.mean(jack[4]) - 3.0) < 0.05  # H(label) = 3 bits


def test_unit_entropies_of_pure_clusters_are_zero() -> None:
    u = np.repeat(np.arange(40), 2)
    y = (np.arange(40) % 4)[u]
    uc = unit_counts(y * 3, y, u)
    np.testing.assert_allclose(unit_entropies(uc, unit_bootstrap(40, 5, np.random.default_rng(0))), 0.0, atol=1e-12)


def test_unit_bootstrap_draws_as_many_units_as_there_are() -> None:
    w = unit_bootstrap(7, 50, np.random.default_rng(0))
    assert w.shape == (50, 7) and np.all(w.sum(axis=1) == 7) and np.all(w == np.rint(w))
    with pytest.raises(PolyauditError, match="2 units"):
        unit_bootstrap(1, 5, np.random.default_rng(0))


def test_cluster_sizes_flag_one_giant_cluster() -> None:
    ids = np.array([0] * 60 + [1] * 20 + [2] * 20)
    sizes = cl.cluster_sizes(ids, 3)
    assert sizes.sizes == (60, 20, 20) and sizes.largest_fraction == 0.6 and sizes.degenerate()
    assert not cl.cluster_sizes(np.arange(100) % 4, 4).degenerate()
    assert sizes.summary()["n_clusters"] == 3
    assert sizes.effective_k == pytest.approx(2 ** -(0.6 * np.log2(0.6) + 0.4 * np.log2(0.2)))
    assert cl.cluster_sizes(np.arange(100) % 4, 4).effective_k == pytest.approx(4.0)


def test_one_spline_code_is_one_polytope_cluster() -> None:
    codes = np.ones((50, 8), dtype=bool)
    ids = cl.polytope_clusters(codes, 4, np.random.default_rng(0))
    assert np.all(ids == 0) and cl.cluster_sizes(ids, 4).degenerate()


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


def test_random_frame_is_a_haar_rotation() -> None:
    """Orthonormal axes; the Cholesky-QR Q equals the Householder Q with R's diagonal made
    positive (the Haar construction); over draws, every entry has mean 0 and variance 1/d."""
    d = 24
    rng = np.random.default_rng(3)
    q = cl.random_frame(d, 2 * d + 5, rng)
    assert q.shape == (d, 2 * d + 5)
    for block in (q[:, :d], q[:, d:2 * d]):
        np.testing.assert_allclose(block.T @ block, np.eye(d), atol=1e-10)
    g = np.random.default_rng(4).standard_normal((d, d))
    house, r = np.linalg.qr(g)
    np.testing.assert_allclose(cl._haar(g), house * np.where(np.diag(r) < 0, -1.0, 1.0), atol=1e-10)
    draws = np.stack([cl.random_frame(d, d, rng) for _ in range(400)])
    assert abs(draws.mean()) < 4 * np.sqrt(1 / d / draws.size)
    np.testing.assert_allclose((draws**2).mean(axis=0).mean(), 1 / d, rtol=0.05)
    assert np.all(np.abs(draws.mean(axis=0)) < 5 * np.sqrt(1 / d / 400))  # no axis or sign preferred


def test_haar_falls_back_to_householder_on_a_singular_block() -> None:
    g = np.random.default_rng(5).standard_normal((6, 6))
    g[:, 5] = g[:, 4]  # g^T g singular: Cholesky fails
    q = cl._haar(g)
    np.testing.assert_allclose(q.T @ q, np.eye(6), atol=1e-10)
