"""The action of random projections of a trajectory: how smooth a code is along a smooth stimulus.

Marshall & Kirchner 2024 ("Understanding polysemanticity in neural networks through coding theory",
sec. 5, Fig. 4), after Stringer et al. 2019: feed a smooth stimulus (a dot moving on a circle) and
record a layer's activations h_t in R^m, frame by frame. Project them on random directions
r ~ N(0, I/m); the ENERGY of one projected trajectory p_t = r . h_t is the sum of its squared
successive differences, and the ACTION is half its mean over projections:

    S = 1/2 < |D r|^2 >_r,   D = [h_{t+1} - h_t]_t  (steps, [n_steps, m])

Because E_r[r r^T] = I/m, the expected action is exact:  E[S] = 1/2 tr(Sigma),  Sigma = D^T D / m
(the steps' scatter per unit; for a closed loop the steps sum to zero, so D^T D / n_steps is also
their covariance and E[S] = n_steps / (2 m) tr(cov D)). A smooth code has small steps for a smooth
stimulus; a code whose eigenspectrum decays slowly (alpha near 0) spends variance on directions
that change fast along the stimulus, so its action is larger.

`relative_action` is the same quantity per unit of the trajectory's own spread (its projected
variance about the trajectory mean, with the same projections): scale-free, like alpha, so a layer
is not called rough merely because its activations are large.

Projections are ONE matrix product per call ([frames, m] @ [m, n_proj]), never a Python loop over
projections. Pure numpy: no torch, no I/O.
"""

from __future__ import annotations

import numpy as np

from polyaudit.errors import PolyauditError

DEFAULT_N_PROJ = 1000


def _as_loops(traj: np.ndarray) -> np.ndarray:
    """[T, m] or [K, T, m] -> float64 [K, T, m]."""
    a = np.asarray(traj, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[1] < 2 or a.shape[2] < 1:
        raise PolyauditError(
            f"a trajectory is [frames, units] or [loops, frames, units] with >= 2 frames, got shape {np.shape(traj)}"
        )
    if not np.all(np.isfinite(a)):
        raise PolyauditError("the trajectory contains NaN/inf values")
    return a


def successive_differences(traj: np.ndarray, closed: bool = True) -> np.ndarray:
    """Steps h_{t+1} - h_t of a trajectory [T, m] (or loops [K, T, m]); a closed loop adds the step
    from the last frame back to the first, so it has T steps instead of T - 1."""
    a = _as_loops(traj)
    steps = np.diff(a, axis=1)
    if closed:
        steps = np.concatenate([steps, a[:, :1] - a[:, -1:]], axis=1)
    return steps if np.ndim(traj) == 3 else steps[0]


def projection_matrix(m: int, n_proj: int, rng: np.random.Generator) -> np.ndarray:
    """float64 [m, n_proj]: columns r_j ~ N(0, I/m)."""
    if m < 1 or n_proj < 1:
        raise PolyauditError(f"projection_matrix needs m >= 1 and n_proj >= 1, got {m}, {n_proj}")
    return rng.standard_normal((m, n_proj)) / np.sqrt(m)


def projection_energies(
    traj: np.ndarray, projections: np.ndarray, closed: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(energy, spread), each [K, n_proj] (loops x projections; K = 1 for a [T, m] trajectory).

    energy[k, j] = sum_t (r_j . (h_{t+1} - h_t))^2 along loop k; spread[k, j] = sum_t (r_j . (h_t -
    mean_t h))^2. One matrix product projects every frame of every loop on every direction."""
    a = _as_loops(traj)
    k, t, m = a.shape
    r = np.asarray(projections, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] != m:
        raise PolyauditError(f"projections must be [{m}, n_proj] for {m} units, got shape {r.shape}")
    centred = a - a.mean(axis=1, keepdims=True)
    p = (centred.reshape(k * t, m) @ r).reshape(k, t, r.shape[1])
    steps = np.diff(p, axis=1)
    energy = np.einsum("ktj,ktj->kj", steps, steps)
    if closed:
        energy += (p[:, 0] - p[:, -1]) ** 2
    spread = np.einsum("ktj,ktj->kj", p, p)
    return energy, spread


def action(
    traj: np.ndarray,
    rng: np.random.Generator,
    n_proj: int = DEFAULT_N_PROJ,
    closed: bool = True,
) -> float:
    """S = 1/2 mean_j |D r_j|^2 over `n_proj` directions r_j ~ N(0, I/m) (mean over loops for
    [K, T, m] input)."""
    a = _as_loops(traj)
    energy, _ = projection_energies(a, projection_matrix(a.shape[2], n_proj, rng), closed)
    return float(0.5 * energy.mean())


def relative_action(
    traj: np.ndarray,
    rng: np.random.Generator,
    n_proj: int = DEFAULT_N_PROJ,
    closed: bool = True,
) -> float:
    """Action per unit of spread: (1/2 mean_j energy_j) / (mean_j spread_j), the same projections
    for both. Invariant to scaling the trajectory; for T points evenly spaced on a circle it is
    2 sin^2(pi / T)."""
    a = _as_loops(traj)
    energy, spread = projection_energies(a, projection_matrix(a.shape[2], n_proj, rng), closed)
    total = float(spread.mean())
    if total <= 0:
        raise PolyauditError("the trajectory does not move: its projected spread is 0")
    return float(0.5 * energy.mean() / total)


def expected_action(traj: np.ndarray, closed: bool = True) -> float:
    """E_r[S] = 1/2 tr(Sigma) with Sigma = D^T D / m: the limit of `action` over many projections
    (mean over loops for [K, T, m] input)."""
    a = _as_loops(traj)
    d = successive_differences(a, closed)
    return float(0.5 * np.einsum("kti,kti->", d, d) / (a.shape[0] * a.shape[2]))


def action_standard_error(traj: np.ndarray, n_proj: int, closed: bool = True) -> float:
    """Standard error of `action` with `n_proj` projections of one trajectory [T, m]: |D r|^2 is a
    Gaussian quadratic form with variance 2 tr(Sigma^2), so SE = 1/2 sqrt(2 tr(Sigma^2) / n_proj)."""
    a = _as_loops(traj)
    if a.shape[0] != 1:
        raise PolyauditError("action_standard_error takes one trajectory [T, m]")
    d = successive_differences(a[0], closed)
    g = d @ d.T / a.shape[2]  # same non-zero eigenvalues as Sigma = D^T D / m, smaller when T < m
    return float(0.5 * np.sqrt(2.0 * np.sum(g * g) / n_proj))


def loop_frames(traj: np.ndarray) -> np.ndarray:
    """float64 [K * T, m]: every frame of every loop of `traj` ([T, m] or [K, T, m]), centred on its
    own loop's mean. Their covariance is the stimulus ensemble's within-loop covariance: the
    spectrum whose decay the action along the loop is compared with (its trace is the projected
    spread `projection_energies` divides by, up to the projections' 1/m)."""
    a = _as_loops(traj)
    return (a - a.mean(axis=1, keepdims=True)).reshape(-1, a.shape[2])
