"""K-way partitions of the same samples by four units of description (Polytope Lens, sec. 4).

- `polytope_clusters`: spline codes in Hamming geometry. k-means on +-1 codes: the squared
  Euclidean distance between two +-1 codes is 4 x their Hamming distance, so this is k-means on
  Hamming distances to (relaxed, real-valued) centres. Not average-linkage agglomeration, which on
  Hamming distances collapses into one giant cluster.
- `direction_clusters`: k-means on L2-normalised activations (spherical k-means in effect).
- `neuron_clusters`: each sample to its most active unit among the K units that are most often the
  most active one (so the partition has K parts like the others).
- `random_hyperplane_codes`: the control: codes of as many random hyperplanes as the layer has
  units (the layer's own frame of coordinate planes, rotated at random), each with the on/off
  balance of one real unit, clustered like spline codes; it asks whether the ORIENTATION of the
  network's own boundaries matters.

`partitions` cuts the same samples all four ways (one child generator per method).

Every function takes an explicit `numpy.random.Generator`; sklearn gets an integer drawn from it.
`cluster_sizes` summarises a partition and flags a degenerate one (largest cluster above
`max_fraction` of the samples).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from polyaudit.errors import PolyauditError
from polyaudit.threads import blas_threads

MAX_FRACTION = 0.5  # a partition whose largest cluster holds more than this is degenerate


@dataclass(frozen=True)
class ClusterSizes:
    """Size distribution of one partition (sizes sorted descending)."""

    sizes: tuple[int, ...]
    n: int
    k_requested: int

    @property
    def largest_fraction(self) -> float:
        return self.sizes[0] / self.n if self.n else float("nan")

    @property
    def n_clusters(self) -> int:
        return len(self.sizes)

    @property
    def effective_k(self) -> float:
        """2^H(cluster): the number of equal clusters with the same size entropy."""
        p = np.asarray(self.sizes, dtype=np.float64) / max(self.n, 1)
        p = p[p > 0]
        return float(2.0 ** -(p * np.log2(p)).sum())

    def degenerate(self, max_fraction: float = MAX_FRACTION) -> bool:
        return not self.largest_fraction <= max_fraction

    def summary(self) -> dict[str, Any]:
        s = np.asarray(self.sizes, dtype=float)
        return {
            "k_requested": self.k_requested,
            "n_clusters": self.n_clusters,
            "largest_fraction": round(self.largest_fraction, 4),
            "effective_k": round(self.effective_k, 3),
            "sizes": list(self.sizes),
            "median_size": float(np.median(s)) if s.size else 0.0,
            "singletons": int(np.sum(s == 1)),
        }


def cluster_sizes(ids: np.ndarray, k_requested: int) -> ClusterSizes:
    _, counts = np.unique(np.asarray(ids), return_counts=True)
    return ClusterSizes(tuple(int(c) for c in sorted(counts, reverse=True)), int(np.sum(counts)),
                        k_requested)


def _check(x: np.ndarray, k: int, what: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 2:
        raise PolyauditError(f"{what} must be [n, d], got shape {a.shape}")
    if not 2 <= k <= a.shape[0]:
        raise PolyauditError(f"cannot cut {a.shape[0]} samples into {k} clusters ({what})")
    return a


def kmeans(x: np.ndarray, k: int, rng: np.random.Generator, n_init: int = 1,
           max_iter: int = 100) -> np.ndarray:
    """int [n]: Lloyd k-means (k-means++ init, best of `n_init`: one, scikit-learn's own default
    for k-means++, as C1 averages independent restarts anyway) on float32 rows (what is
    clustered is +-1 codes, exact in float32, or unit rows; float64 took about twice as long).
    With fewer distinct points than k some clusters stay empty (`cluster_sizes` shows it). Runs on one thread
    (OpenMP and BLAS): at these sizes threads cost more than they save, badly so on a busy machine,
    and the result does not depend on the core count."""
    # here, not at the top: scikit-learn is slow to import
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    a = np.ascontiguousarray(_check(x, k, "k-means input"), dtype=np.float32)
    if not np.all(np.isfinite(a)):
        raise PolyauditError("k-means input contains NaN or inf")
    seed = int(rng.integers(2**31 - 1))
    km = KMeans(n_clusters=k, n_init=n_init, max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings(), blas_threads(1):
        warnings.simplefilter("ignore", ConvergenceWarning)  # duplicate points: sizes report it
        return np.asarray(km.fit_predict(a), dtype=np.int64)


def signed_codes(codes: np.ndarray) -> np.ndarray:
    """float32 +-1 codes with the columns that never change dropped (they carry no distance)."""
    c = np.asarray(codes, dtype=bool)
    varying = c.any(axis=0) & ~c.all(axis=0)
    return np.where(c[:, varying], np.float32(1.0), np.float32(-1.0))


def polytope_clusters(codes: np.ndarray, k: int, rng: np.random.Generator, n_init: int = 1) -> np.ndarray:
    """int [n]: K clusters of spline codes in Hamming geometry (k-means on +-1 codes). When every
    sample has the same code there is one region: one cluster (a degenerate partition, reported by
    `cluster_sizes`, not an error)."""
    s = signed_codes(_check(codes, k, "spline codes"))
    if s.shape[1] == 0:
        return np.zeros(s.shape[0], dtype=np.int64)
    return kmeans(s, k, rng, n_init=n_init)


def direction_clusters(acts: np.ndarray, k: int, rng: np.random.Generator, n_init: int = 1) -> np.ndarray:
    """int [n]: K clusters of activation directions (k-means on L2-normalised rows)."""
    a = np.asarray(_check(acts, k, "activations"), dtype=np.float64)
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    unit = np.divide(a, norms, out=np.zeros_like(a), where=norms > 0)
    return kmeans(unit, k, rng, n_init=n_init)


def neuron_clusters(acts: np.ndarray, k: int) -> np.ndarray:
    """int [n]: each sample's most active unit among the K units most often the most active.

    Units never the argmax fill up the K by variance, so the partition always offers K parts.
    """
    a = np.asarray(_check(acts, k, "activations"), dtype=np.float64)
    if a.shape[1] < k:
        raise PolyauditError(f"a layer of {a.shape[1]} units cannot give {k} neuron clusters")
    wins = np.bincount(np.argmax(a, axis=1), minlength=a.shape[1]).astype(np.float64)
    var = a.var(axis=0)
    order = np.lexsort((-var, -wins))  # most wins first, ties by variance
    top = np.sort(order[:k])
    return np.asarray(top[np.argmax(a[:, top], axis=1)], dtype=np.int64)


def random_frame(d: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """[d, m] unit normals: the axes of a uniformly random rotation of R^d (Haar), m > d in several
    independent rotations. The layer's own hyperplanes are the coordinate planes of its activation
    space, an orthonormal frame; the control is that frame rotated at random (iid Gaussian normals
    would cut more redundantly, and a random layer's own frame would then look oriented)."""
    return np.concatenate([_haar(rng.standard_normal((d, d))) for _ in range(-(-m // d))], axis=1)[:, :m]


def _haar(g: np.ndarray) -> np.ndarray:
    """The Q of g = QR with R's diagonal positive: Haar-distributed for a Gaussian g. Cholesky QR
    (Q = g R^-1, R = chol(g^T g): matrix products, about twice as fast as Householder QR here,
    the same Q to ~1e-11); Householder QR with the sign fix where g^T g is too ill-conditioned."""
    from scipy.linalg import LinAlgError, cholesky, solve_triangular

    try:
        r = cholesky(g.T @ g, lower=False, check_finite=False)
        return np.asarray(solve_triangular(r, g.T, trans="T", lower=False, check_finite=False).T)
    except LinAlgError:
        q, r = np.linalg.qr(g)
        return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def random_hyperplane_codes(acts: np.ndarray, on_fraction: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """bool [n, m]: sides of m = len(on_fraction) random hyperplanes (the axes of a random rotation,
    `random_frame`), hyperplane j offset so that round(on_fraction[j] * n) samples lie on its
    positive side: random orientations with the same balance as the layer's own units
    (on_fraction = codes.mean(0))."""
    a = np.asarray(acts, dtype=np.float64)
    frac = np.asarray(on_fraction, dtype=np.float64).reshape(-1)
    if a.ndim != 2 or frac.size < 1 or np.any((frac < 0) | (frac > 1)):
        raise PolyauditError(
            f"random hyperplanes need activations [n, d] and on-fractions in [0, 1], got {a.shape}, {frac.size}"
        )
    n = a.shape[0]
    proj = a @ random_frame(a.shape[1], frac.size, rng)
    n_on = np.rint(frac * n).astype(np.int64)
    ordered = np.sort(proj, axis=0)
    cols = np.arange(frac.size)
    thr = ordered[np.clip(n - n_on, 0, n - 1), cols]
    return np.where(n_on[None, :] == 0, False, proj >= thr[None, :])


METHODS: tuple[str, ...] = ("polytope", "direction", "neuron", "random")


def partitions(acts: np.ndarray, codes: np.ndarray, k: int, rng: np.random.Generator,
               methods: tuple[str, ...] = METHODS, errors: dict[str, str] | None = None,
               planes: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Cluster ids [n] of each method (one child generator per method of METHODS, in that order).
    With `errors`, a baseline that cannot be built (e.g. fewer units than K for `neuron`, as in a
    CNN layer with few channels) is left out and its reason stored there; else it raises.
    `planes`: the random control's codes (`random_hyperplane_codes`) when drawn already, e.g. one
    frame shared by the partitions at two K, as the polytope codes are; else drawn here."""
    seeds = rng.spawn(len(METHODS))
    out: dict[str, np.ndarray] = {}
    for method, g in zip(METHODS, seeds, strict=True):
        if method not in methods:
            continue
        if method == "polytope":
            out[method] = polytope_clusters(codes, k, g)
            continue
        try:
            if method == "direction":
                out[method] = direction_clusters(acts, k, g)
            elif method == "neuron":
                out[method] = neuron_clusters(acts, k)
            else:
                drawn = random_hyperplane_codes(acts, np.asarray(codes).mean(axis=0), g) if planes is None else planes
                out[method] = polytope_clusters(drawn, k, g)
        except PolyauditError as e:
            if errors is None:
                raise
            errors[method] = str(e)
    return out
