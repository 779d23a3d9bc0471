"""How monosemantic a clustering is: the label entropy left inside its clusters.

Black, Sharkey et al. 2022 (sec. 4) compare units of description by how well their groups of
samples line up with semantic labels. Here a clustering is scored by the conditional entropy
H(label | cluster) in bits (0: every cluster holds one label; log2 of the number of labels: clusters
say nothing), and by the adjusted mutual information (chance-corrected, 0 for a random clustering).

Resampling versions take WEIGHTS instead of index arrays: row b of `weights` [B, n] says how many
times each sample enters replicate b (bootstrap counts), so every replicate is one weighted
contingency table built with a single `bincount`, never a Python loop over samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from polyaudit.errors import PolyauditError


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
    """H(label | cluster) in bits: the label uncertainty left once the cluster is known."""
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


def weighted_entropies(cluster_ids: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """H(label | cluster) for each row of `weights` [B, n] (e.g. bootstrap counts): float [B]."""
    c, kc = _codes(cluster_ids, "cluster_ids")
    y, ky = _codes(labels, "labels")
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != c.size:
        raise PolyauditError(f"weights must be [B, {c.size}], got {w.shape}")
    cell = c * ky + y
    b = w.shape[0]
    flat = (np.arange(b)[:, None] * (kc * ky) + cell[None, :]).ravel()
    tables = np.bincount(flat, weights=w.ravel(), minlength=b * kc * ky).reshape(b, kc, ky)
    return entropy_from_tables(tables)


def permuted_entropies(cluster_ids: np.ndarray, labels: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """H(label[perm] | cluster) for each row of `perms` [B, n] (label shuffles): float [B]."""
    c, kc = _codes(cluster_ids, "cluster_ids")
    y, ky = _codes(labels, "labels")
    p = np.asarray(perms, dtype=np.int64)
    if p.ndim != 2 or p.shape[1] != c.size:
        raise PolyauditError(f"perms must be [B, {c.size}], got {p.shape}")
    b = p.shape[0]
    flat = (np.arange(b)[:, None] * (kc * ky) + (c[None, :] * ky + y[p])).ravel()
    tables = np.bincount(flat, minlength=b * kc * ky).reshape(b, kc, ky)
    return entropy_from_tables(tables)


def resample_weights(resamples: Sequence[np.ndarray] | np.ndarray, n: int) -> np.ndarray:
    """Bootstrap index arrays (a [B, m] array, or B arrays of any lengths as a cluster bootstrap
    gives) -> counts [B, n]: how often each sample was drawn in each replicate."""
    rows = [np.asarray(r, dtype=np.int64) for r in resamples]
    if not rows:
        return np.zeros((0, n))
    rep = np.repeat(np.arange(len(rows)), [r.size for r in rows])
    flat = rep * n + np.concatenate(rows)
    return np.bincount(flat, minlength=len(rows) * n).reshape(len(rows), n).astype(np.float64)
