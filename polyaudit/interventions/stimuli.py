"""C6 stimuli and their hidden trajectories: smooth closed loops through a model's input space.

- Image models whose probe is the 8x8 digits: the paper's stimulus (Marshall & Kirchner 2024,
  Fig. 4), a Gaussian dot moving once around a circle, frame by frame, at the digits resolution;
  one loop per (radius, width) in `DOT_RADII` x `DOT_SIGMAS`.
- Other vector models: a circle through two probe inputs x_a, x_b, in the plane they span
  (`circle_through`): centre (x_a + x_b) / 2, radius |x_a - x_b| / 2, passing through both, so the
  loop visits two real inputs and stays in their plane; one loop per random pair.
- Language models: the same circle through the input EMBEDDINGS of two tokens, fed at one position
  of a real context. The token embedding module's output is replaced at that position through
  `adapter.hooks(writes=...)` (at `adapter.input_embedding_site()`, rows of
  `adapter.input_embedding_weight()`), so positional embeddings, layer norms and attention act on
  it as on any token: identical for GPT-2, NeoX, Llama, OPT and BERT. The trajectory is read at that position. Token a is the context's own token
  there, token b a random token of the probe; one loop per context.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from polyaudit.errors import PolyauditError
from polyaudit.models.base import Site, SiteKind
from polyaudit.threads import compute_threads

DOT_RADII = (1.5, 2.0, 2.5, 3.0)
DOT_SIGMAS = (0.8, 1.2)
DOT_FRAMES = 64
N_LOOPS = 8  # loops of the circle stimuli (vector and token models)
CIRCLE_FRAMES = 32
CONTEXT = 16  # tokens of context; the stimulus sits at the last one


def circle_through(a: np.ndarray, b: np.ndarray, n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """[n_frames, d] points evenly spaced on the circle through a (frame 0) and b (frame n/2) in the
    plane spanned by a and b (a random plane containing both when a and b are collinear)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    c, u = (a + b) / 2.0, (a - b) / 2.0
    r = float(np.linalg.norm(u))
    if r == 0:
        raise PolyauditError("circle_through needs two different points")
    w = c - (c @ u) / (r * r) * u
    if np.linalg.norm(w) < 1e-9 * max(1.0, float(np.linalg.norm(c))):
        w = rng.standard_normal(a.size)
        w -= (w @ u) / (r * r) * u
    w *= r / np.linalg.norm(w)
    theta = 2.0 * np.pi * np.arange(n_frames) / n_frames
    return c + np.cos(theta)[:, None] * u + np.sin(theta)[:, None] * w


def dot_loops() -> np.ndarray:
    """float32 [K, DOT_FRAMES, 64]: the moving dot at every radius x width."""
    from polyaudit.probes.digits import moving_dot

    return np.stack([moving_dot(DOT_FRAMES, 8, radius, sigma) for radius in DOT_RADII for sigma in DOT_SIGMAS])


def _read_all(sites: list[Site], store: dict[Site, list[np.ndarray]], pick: Any) -> dict[Site, Any]:
    def reader(site: Site, t: torch.Tensor) -> None:
        store[site].append(pick(t).detach().float().cpu().numpy())

    return dict.fromkeys(sites, reader)


def vector_trajectories(loaded: Any, loops: np.ndarray, kind: SiteKind) -> list[np.ndarray]:
    """Per layer float [K, T, m]: the site's activations along each loop of inputs [K, T, ...]."""
    adapter = loaded.adapter
    sites = adapter.sites(kind)
    store: dict[Site, list[np.ndarray]] = {s: [] for s in sites}
    reads = _read_all(sites, store, lambda t: t if t.dim() == 3 else t.reshape(t.shape[0], -1))
    for loop in loops:
        adapter.run_until(torch.as_tensor(loop, dtype=torch.float32), None, reads)
    out = []
    for s in sites:
        traj = np.stack(store[s])  # [K, T, m], or [K, T, G, C] for a CNN read at G positions
        if traj.ndim == 4:  # every position's trajectory is a trajectory of its own
            traj = traj.transpose(0, 2, 1, 3).reshape(-1, traj.shape[1], traj.shape[3])
        out.append(traj)
    return out


def probe_loops(inputs: torch.Tensor, rng: np.random.Generator) -> np.ndarray:
    """[N_LOOPS, CIRCLE_FRAMES, ...]: circles through random pairs of distinct probe inputs."""
    x = inputs.detach().cpu().double().numpy()
    flat = x.reshape(x.shape[0], -1)
    loops = []
    for _ in range(100 * N_LOOPS):
        i, j = rng.choice(x.shape[0], size=2, replace=False)
        if not np.array_equal(flat[i], flat[j]):
            loops.append(circle_through(flat[i], flat[j], CIRCLE_FRAMES, rng).reshape(CIRCLE_FRAMES, *x.shape[1:]))
        if len(loops) == N_LOOPS:
            return np.stack(loops).astype(np.float32)
    raise PolyauditError("the probe has fewer than two distinct inputs: no circle through them")


def token_trajectories(loaded: Any, probe: Any, kind: SiteKind, rng: np.random.Generator
                       ) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Per layer float [K, T, m] at the stimulus position, and a description of the loops."""
    adapter = loaded.adapter
    emb_site = adapter.input_embedding_site()
    if emb_site is None:
        raise PolyauditError(
            f"the {adapter.family} adapter names no input embedding site: the C6 token stimulus moves "
            "a token's embedding; give the adapter an input_embedding_site()")
    table = adapter.input_embedding_weight()
    ids = probe.inputs
    mask = probe.attention_mask if probe.attention_mask is not None else torch.ones_like(ids)
    real = mask.sum(1)
    context = int(min(CONTEXT, int(real.max())))
    usable = np.flatnonzero((real >= context).cpu().numpy())
    if context < 2 or usable.size == 0:
        raise PolyauditError(f"probe {probe.name} has no sequence of {CONTEXT} real tokens for the stimulus context")
    pool = ids[mask.bool()].unique().cpu().numpy()
    pos = context - 1
    sites = adapter.sites(kind)
    store: dict[Site, list[np.ndarray]] = {s: [] for s in sites}
    reads = _read_all(sites, store, lambda t: t[:, pos, :])
    described = []
    for _ in range(N_LOOPS):
        seq = int(usable[rng.integers(usable.size)])
        ctx = ids[seq][mask[seq].bool()][:context]  # its first `context` real tokens, whatever the padding side
        a = int(ctx[pos])
        b = int(rng.choice(pool[pool != a])) if (pool != a).any() else a
        if b == a:
            raise PolyauditError(f"probe {probe.name} has a single distinct token: no circle between two")
        points = torch.as_tensor(circle_through(table[a].double().cpu().numpy(), table[b].double().cpu().numpy(),
                                                CIRCLE_FRAMES, rng))

        def write(_site: Site, t: torch.Tensor, points: torch.Tensor = points) -> torch.Tensor:
            t = t.clone()
            t[:, pos, :] = points.to(device=t.device, dtype=t.dtype)
            return t

        batch = ctx.unsqueeze(0).repeat(CIRCLE_FRAMES, 1)
        adapter.run_until(batch, torch.ones_like(batch), reads, writes={emb_site: write})
        described.append({"sequence": seq, "token_a": a, "token_b": b})
    info = {"stimulus": "embedding circle", "context": context, "position": pos,
            "frames": CIRCLE_FRAMES, "loops": described, "embedding_module": emb_site.module}
    return [np.stack(store[s]) for s in sites], info


def collect(subject: Any, kind: SiteKind, rng: np.random.Generator) -> tuple[list[Any], list[np.ndarray], dict[str, Any]]:
    """What C6 needs at every layer of `kind`: the probe's activations (SiteData, from the run's
    capture), the stimulus trajectories [K, T, m], and a description of the stimulus."""
    with compute_threads(subject.loaded.model):
        layers = subject.capture().get_kind(kind)
        trajs, info = _trajectories(subject, kind, rng)
    return layers, trajs, info


def trajectories(subject: Any, kind: SiteKind, rng: np.random.Generator) -> tuple[list[np.ndarray], dict[str, Any]]:
    """The C6 stimulus for this model and the trajectory it traces at every layer of `kind`."""
    with compute_threads(subject.loaded.model):
        return _trajectories(subject, kind, rng)


def _trajectories(subject: Any, kind: SiteKind, rng: np.random.Generator) -> tuple[list[np.ndarray], dict[str, Any]]:
    probe = subject.probe()
    loaded = subject.loaded
    if loaded.adapter.input_kind == "tokens":
        return token_trajectories(loaded, probe, kind, rng)
    shape = tuple(probe.meta.get("image_shape", ())) if probe.meta else ()
    if shape == (8, 8) and tuple(probe.inputs.shape[1:]) == (64,):
        info = {"stimulus": "moving dot", "radii": list(DOT_RADII), "sigmas": list(DOT_SIGMAS),
                "frames": DOT_FRAMES}
        return vector_trajectories(loaded, dot_loops(), kind), info
    info = {"stimulus": "circle through two probe inputs", "frames": CIRCLE_FRAMES, "loops": N_LOOPS}
    return vector_trajectories(loaded, probe_loops(probe.inputs, rng), kind), info
