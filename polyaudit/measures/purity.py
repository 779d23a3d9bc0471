"""How monosemantic a clustering is: the label entropy left inside its clusters.

Black, Sharkey et al. 2022 (sec. 4) compare units of description by how well their groups of
samples line up with semantic labels. Here a clustering is scored by the conditional entropy
H(label | cluster) in bits (0: every cluster holds one label; log2 of the number of labels: clusters
say nothing), and by the adjusted mutual information (chance-corrected, 0 for a random clustering).

The plug-in H(label | cluster) is biased low, and by an amount that grows with the number of
non-empty (cluster, label) cells and with the labels a cluster holds too rarely to be seen: two
partitions of the same samples would differ by their bias alone. `unit_entropies` removes the
bias to first order with the delete-one-unit jackknife at the UNIT OF REPLICATION (Zahl 1977;
Efron & Stein 1981): samples come in units (the sentences of one word, the positions of one image)
that are not independent, so the jackknife leaves out one unit, all its samples, at a time:

    H_J = U H - (U - 1) mean_u H_(-u)            U units, H_(-u) without unit u

Unlike the Miller-Madow correction (which counts the cells seen) it also corrects clusters that
hold labels too rare to be seen, where C1's partitions live (tens of units per cluster).

Resampling works on units: `unit_counts` groups the samples by (unit, cluster, label) once, and
unit weights [B, U] (bootstrap draws, or ones) turn into B weighted contingency tables in one
sparse product, and into B jackknifed entropies (a replicate's U draws are its units); label
permutations permute whole units' labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from polyaudit.errors import PolyauditError

_CHUNK = 1 << 22  # numbers per block of replicates or permutations (bounds memory on large probes)


def _codes(x: np.ndarray, what: str) -> tuple[np.ndarray, int]:
    a = np.asarray(x)
    if a.ndim != 1:
        raise PolyauditError(f"{what} must be one id per sample, got shape {a.shape}")
    _, inv = np.unique(a, return_inverse=True)
    return inv.reshape(-1).astype(np.int64), int(inv.max(initial=-1)) + 1


def contingency(cluster_ids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """int64 [n_clusters, n_labels]: samples of each cluster with each label (ids relabelled 0..)."""
    c, kc = _codes(cluster_ids, "cluster_ids")
    y, ky = _codes(labels, "labels")
    if c.shape != y.shape:
        raise PolyauditError(f"{c.size} cluster ids but {y.size} labels")
    return np.bincount(c * ky + y, minlength=kc * ky).reshape(kc, ky)


def _xlogx(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, x * np.log2(np.where(x > 0, x, 1.0)), 0.0)


def entropy_from_tables(tables: np.ndarray) -> np.ndarray:
    """H(label | cluster) in bits of contingency tables [..., n_clusters, n_labels] (counts or
    weights): (sum_i n_i log2 n_i - sum_ij n_ij log2 n_ij) / N, with n_i the cluster totals."""
    t = np.asarray(tables, dtype=np.float64)
    n = t.sum(axis=(-2, -1))
    rows = _xlogx(t.sum(axis=-1)).sum(axis=-1)
    cells = _xlogx(t).sum(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        h = (rows - cells) / n
    return np.where(n > 0, np.maximum(h, 0.0), np.nan)


def conditional_entropy(cluster_ids: np.ndarray, labels: np.ndarray) -> float:
    """H(label | cluster) in bits: the label uncertainty left once the cluster is known (plug-in)."""
    if np.asarray(labels).size == 0:
        raise PolyauditError("conditional_entropy needs at least one sample")
    return float(entropy_from_tables(contingency(cluster_ids, labels)))


def label_entropy(labels: np.ndarray) -> float:
    """H(label) in bits (the value of H(label | cluster) for a single cluster)."""
    return conditional_entropy(np.zeros(np.asarray(labels).shape[0], dtype=np.int64), labels)


def adjusted_mutual_information(cluster_ids: np.ndarray, labels: np.ndarray) -> float:
    """Chance-corrected mutual information between clusters and labels (scikit-learn's AMI)."""
    from sklearn.metrics import adjusted_mutual_info_score  # here, not at the top: slow to import

    return float(adjusted_mutual_info_score(np.asarray(labels), np.asarray(cluster_ids)))


# ---- at the unit of replication --------------------------------------------------------------


@dataclass(frozen=True)
class UnitCounts:
    """The samples of one partition grouped by (unit, cluster, label): entry e holds `count[e]`
    samples of unit `unit[e]` in cluster `cluster[e]` with label `label[e]` (all ids 0-based)."""

    unit: np.ndarray
    cluster: np.ndarray
    label: np.ndarray
    count: np.ndarray
    n_units: int
    n_clusters: int
    n_labels: int
    unit_label: np.ndarray | None  # the label of each unit, when every unit has one label; else None


def unit_counts(cluster_ids: np.ndarray, labels: np.ndarray, units: np.ndarray | None = None) -> UnitCounts:
    """Group the samples by (unit, cluster, label); `units` default: every sample its own unit."""
    c, kc = _codes(cluster_ids, "cluster_ids")
    y, ky = _codes(labels, "labels")
    u, ku = _codes(np.arange(c.size) if units is None else units, "units")
    if not c.size == y.size == u.size:
        raise PolyauditError(f"{c.size} cluster ids, {y.size} labels and {u.size} units")
    key, count = np.unique((u * kc + c) * ky + y, return_counts=True)
    unit_label = np.full(ku, -1, dtype=np.int64)
    unit_label[u] = y
    constant = bool(np.array_equal(unit_label[u], y))
    return UnitCounts(unit=key // (kc * ky), cluster=(key // ky) % kc, label=key % ky,
                      count=count.astype(np.int64), n_units=ku, n_clusters=kc, n_labels=ky,
                      unit_label=unit_label if constant else None)


def _chunks(rows: int, width: int) -> list[tuple[int, int]]:
    """(lo, hi) blocks of rows so that a block of rows x width holds about _CHUNK numbers."""
    step = max(1, _CHUNK // max(width, 1))
    return [(lo, min(rows, lo + step)) for lo in range(0, rows, step)]


def _sparse(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> Any:
    """A scipy CSR matrix (duplicates summed); here, not at the top: scipy.sparse is slow to import."""
    from scipy.sparse import csr_matrix

    return csr_matrix((values, (rows, cols)), shape=shape)


@dataclass(frozen=True)
class _Layout:
    """Index arrays of one `UnitCounts` that the jackknife needs (built once per partition)."""

    cells: Any  # sparse [K L, U]: samples of each unit in each (cluster, label) cell
    entry_start: np.ndarray  # [U]: first entry of each unit (entries are sorted by unit)
    pair_cluster: np.ndarray  # [p]: cluster of each (unit, cluster) pair, sorted by unit
    pair_count: np.ndarray  # [p]: samples of the unit in the cluster
    pair_start: np.ndarray  # [U]: first pair of each unit
    unit_size: np.ndarray  # [U]: samples of each unit


def _layout(uc: UnitCounts) -> _Layout:
    k, n_lab, n_u = uc.n_clusters, uc.n_labels, uc.n_units
    pair, inv = np.unique(uc.unit * k + uc.cluster, return_inverse=True)
    return _Layout(
        cells=_sparse(uc.cluster * n_lab + uc.label, uc.unit, uc.count, (k * n_lab, n_u)),
        entry_start=np.searchsorted(uc.unit, np.arange(n_u)),
        pair_cluster=pair % k, pair_count=np.bincount(inv.reshape(-1), weights=uc.count).astype(np.int64),
        pair_start=np.searchsorted(pair // k, np.arange(n_u)),
        unit_size=np.bincount(uc.unit, weights=uc.count, minlength=n_u).astype(np.int64),
    )


def _per_unit(terms: np.ndarray, start: np.ndarray) -> np.ndarray:
    """[B, U] sums of the terms [B, e] of each unit (its terms are contiguous from `start`)."""
    if start.size == terms.shape[1]:  # one term per unit
        return terms
    return np.add.reduceat(terms, start, axis=1)


def _jackknifed(tables: np.ndarray, cell: np.ndarray, lay: _Layout, count: np.ndarray,
                weights: np.ndarray) -> np.ndarray:
    """Delete-one-unit jackknife H(label | cluster) [B] of tables [B, K, L]: entry e of each row has
    `count[e]` samples in flat cell `cell[b, e]` (or [e]); `weights` [B, U] are the draws of each
    unit (ones: the sample itself). Deleting one draw of unit u removes its samples from its cells."""
    b, k, n_lab = tables.shape
    counts = np.rint(tables).astype(np.int64)  # sums of whole samples: integers
    flat = counts.reshape(b, k * n_lab)
    rows = counts.sum(axis=2)
    total = rows.sum(axis=1)
    top = max(int(total.max()), int(lay.unit_size.max()))
    lut = _xlogx(np.arange(top + 1, dtype=np.float64))  # x log2 x of every count

    s_rows, s_cells = lut[rows].sum(axis=1), lut[flat].sum(axis=1)
    t_e = flat[:, cell] if cell.ndim == 1 else np.take_along_axis(flat, cell, axis=1)
    # a unit not drawn (weight 0) may index the table below 0: numpy wraps, the term weighs 0
    d_cells = _per_unit(lut[t_e] - lut[t_e - count], lay.entry_start)  # [B, U]
    r_p = rows[:, lay.pair_cluster]
    d_rows = _per_unit(lut[r_p] - lut[r_p - lay.pair_count], lay.pair_start)
    rest = total[:, None] - lay.unit_size[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        left_out = np.where(rest > 0, (s_rows[:, None] - d_rows - s_cells[:, None] + d_cells) / rest, 0.0)
        h = (s_rows - s_cells) / total
    n = weights.sum(axis=1)
    return n * h - (n - 1) / n * (weights * left_out).sum(axis=1)


def unit_entropies(uc: UnitCounts, unit_weights: np.ndarray) -> np.ndarray:
    """H(label | cluster) in bits, jackknife-corrected at the unit of replication (module
    docstring), one per row of `unit_weights` [B, n_units] (bootstrap draws of each unit; ones:
    the estimate itself): float [B]. A unit drawn twice counts as two independent draws."""
    w = np.atleast_2d(np.asarray(unit_weights, dtype=np.float64))
    if w.shape[1] != uc.n_units or np.any(w < 0) or np.any(w != np.rint(w)):
        raise PolyauditError(f"unit weights must be whole draws [B, {uc.n_units}], got shape {w.shape}")
    lay = _layout(uc)
    cell = uc.cluster * uc.n_labels + uc.label
    out = []
    for lo, hi in _chunks(w.shape[0], max(uc.unit.size, uc.n_units)):
        tables = np.asarray(lay.cells @ w[lo:hi].T).T.reshape(-1, uc.n_clusters, uc.n_labels)
        out.append(_jackknifed(tables, cell, lay, uc.count, w[lo:hi]))
    return np.concatenate(out)


def permuted_unit_entropies(uc: UnitCounts, perms: np.ndarray) -> np.ndarray:
    """`unit_entropies` (unit weights one) with the labels of whole units permuted: row p of
    `perms` [P, n_units] gives unit j the label of unit perms[p, j]. Needs one label per unit."""
    if uc.unit_label is None:
        raise PolyauditError("units carry several labels: permute samples (units=None), not units")
    p = np.asarray(perms, dtype=np.int64)
    if p.ndim != 2 or p.shape[1] != uc.n_units:
        raise PolyauditError(f"perms must be [P, {uc.n_units}], got {p.shape}")
    lay = _layout(uc)
    occupancy = _sparse(uc.unit, uc.cluster, uc.count, (uc.n_units, uc.n_clusters)).toarray()  # [U, K]
    levels = np.arange(uc.n_labels)[None, :, None]
    ones = np.ones((1, uc.n_units))
    out = []
    for lo, hi in _chunks(p.shape[0], uc.n_units * uc.n_labels):
        lab = uc.unit_label[p[lo:hi]]  # [b, U]: each unit's permuted label
        one_hot = (lab[:, None, :] == levels).astype(np.float64)  # [b, L, U]
        tables = (one_hot.reshape(-1, uc.n_units) @ occupancy).reshape(hi - lo, uc.n_labels, -1).transpose(0, 2, 1)
        cell = uc.cluster[None, :] * uc.n_labels + lab[:, uc.unit]
        out.append(_jackknifed(np.ascontiguousarray(tables), cell, lay, uc.count,
                               np.broadcast_to(ones, (hi - lo, uc.n_units))))
    return np.concatenate(out)


def unit_bootstrap(n_units: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """[n_boot, n_units] multiplicities of a bootstrap over units (each replicate draws n_units
    units with replacement)."""
    if n_units < 2:
        raise PolyauditError(f"a bootstrap needs at least 2 units of replication, got {n_units}")
    draws = rng.integers(0, n_units, size=(n_boot, n_units))
    flat = (np.arange(n_boot)[:, None] * n_units + draws).ravel()
    return np.bincount(flat, minlength=n_boot * n_units).reshape(n_boot, n_units).astype(np.float64)
