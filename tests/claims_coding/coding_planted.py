"""Planted ground truth for the coding-theory claims: models and activations whose answer is known
by construction (helpers for the tests in this folder)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from polyaudit.capture import SiteData
from polyaudit.models.base import LoadedModel, Site
from polyaudit.models.hashing import model_sha256
from polyaudit.models.sequential import SequentialAdapter
from polyaudit.probes.base import ProbeSet
from polyaudit.profiles import PROFILES
from polyaudit.run.runtime import RunOptions, Subject

N_FEATURES = 12  # signal features of the planted task
N_CLASSES = 4
COPIES = (1, 2, 3, 4, 6)  # copies per feature at the nominal rates 0, .2, .4, .6, .8 (divide 12)
RATES = (0.0, 0.2, 0.4, 0.6, 0.8)
WIDTH = 2 * N_FEATURES  # hidden units: every level uses all of them
N_PROBE = 600
NOISE = 0.05  # weight of each unit's private noise input (keeps the spectrum free of exact zeros)


def planted_probe(seed: int = 0) -> ProbeSet:
    """Inputs [n, N_FEATURES + WIDTH]: signal features with variances 1/j, then one private noise
    input per hidden unit; labels: argmax of a random linear readout of all the signal features."""
    rng, n = np.random.default_rng(seed), N_PROBE
    scale = 1.0 / np.sqrt(np.arange(1, N_FEATURES + 1))
    signal = rng.standard_normal((n, N_FEATURES)) * scale
    noise = rng.standard_normal((n, WIDTH))
    readout = rng.standard_normal((N_FEATURES, N_CLASSES))
    labels = (signal @ readout).argmax(1)
    x = np.concatenate([signal, noise], axis=1).astype(np.float32)
    return ProbeSet(name="planted:redundancy", kind="vectors", inputs=torch.from_numpy(x),
                    labels=labels.astype(np.int64), label_names=tuple(map(str, range(N_CLASSES))),
                    meta={"readout_seed": seed})


def redundant_net(copies: int, probe_seed: int = 0, seed: int = 0) -> nn.Sequential:
    """Two ReLU layers of WIDTH units coding the N_FEATURES / copies strongest features, each as
    `copies` copies of a (+x, -x) unit pair (fixed width, so more copies = fewer distinct features:
    the trade of Thm. 3), plus a small private noise input per unit. The second layer passes the
    first through; the readout averages the copies and applies the task's readout."""
    rng = np.random.default_rng([seed, copies])
    n_kept = N_FEATURES // copies
    v = _task_readout(probe_seed)
    w1 = np.zeros((WIDTH, N_FEATURES + WIDTH))
    w2 = np.eye(WIDTH)
    w3 = np.zeros((N_CLASSES, WIDTH))
    unit = 0
    for j in range(n_kept):
        for _ in range(copies):
            w1[unit, j], w1[unit + 1, j] = 1.0, -1.0
            w3[:, unit], w3[:, unit + 1] = v[j] / copies, -v[j] / copies
            unit += 2
    w1[:, N_FEATURES:] = np.diag(rng.uniform(0.5, 1.5, WIDTH) * NOISE)
    net = nn.Sequential(nn.Linear(N_FEATURES + WIDTH, WIDTH), nn.ReLU(), nn.Linear(WIDTH, WIDTH), nn.ReLU(),
                        nn.Linear(WIDTH, N_CLASSES))
    with torch.no_grad():
        for lin, w in zip((net[0], net[2], net[4]), (w1, w2, w3), strict=True):
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.zero_()
    return net.eval().requires_grad_(False)


def _task_readout(seed: int) -> np.ndarray:
    """The readout matrix `planted_probe(seed=seed)` labels with ([N_FEATURES, N_CLASSES])."""
    rng = np.random.default_rng(seed)
    n = N_PROBE
    rng.standard_normal((n, N_FEATURES))
    rng.standard_normal((n, WIDTH))
    return rng.standard_normal((N_FEATURES, N_CLASSES))


def subject_of(net: nn.Sequential, probe: ProbeSet, name: str) -> Subject:
    """A run-time Subject for a hand-built model and probe (no disk cache)."""
    loaded = LoadedModel(spec=f"planted:{name}", model=net, adapter=SequentialAdapter(net), probe=probe,
                         sha256=model_sha256(net))
    return Subject(loaded, RunOptions(models=(loaded.spec,), use_cache=False, profile=PROFILES["quick"]))


# --- C6: codes with a known power-law spectrum on a circle of stimuli (Stringer et al. 2019) ---
def fourier_code(alpha: float, s: np.ndarray, n_modes: int = 24, seed: int = 0,
                 reverse: bool = False) -> np.ndarray:
    """[len(s), 2 n_modes] responses to stimulus angles s: mode i (frequency i) contributes
    cos(i s), sin(i s) with variance i^alpha, rotated by a fixed random orthogonal matrix. The
    covariance over uniform s has eigenvalues i^alpha / 2 (a power law with exponent alpha); a
    flatter spectrum puts more variance on high frequencies, so the code is rougher along s.
    `reverse` gives the largest variance to the HIGHEST frequency instead (same spectrum)."""
    freq = np.arange(1, n_modes + 1)
    amp = np.sqrt(freq.astype(float) ** alpha)
    if reverse:
        freq = freq[::-1]
    feats = np.concatenate([amp * np.cos(np.outer(s, freq)), amp * np.sin(np.outer(s, freq))], axis=1)
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((2 * n_modes, 2 * n_modes)))
    return feats @ q


def fourier_layers(alphas: tuple[float, ...], n: int = 800, frames: int = 64, loops: int = 4,
                   reverse: bool = False, seed: int = 0) -> tuple[list[SiteData], list[np.ndarray]]:
    """Per layer: SiteData of the code at n random angles, and the trajectory [loops, frames, m]
    along the circle (each loop starts at another phase)."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(0, 2 * np.pi, n)
    grid = 2 * np.pi * np.arange(frames) / frames
    layers, trajs = [], []
    for i, a in enumerate(alphas):
        x = fourier_code(a, s, seed=seed + i, reverse=reverse).astype(np.float32)
        site = Site(layer=i, kind="resid", module=f"planted.{i}")
        layers.append(SiteData(site=site, samples=x, groups=np.arange(n), labels=None, n_nonfinite=0))
        trajs.append(np.stack([fourier_code(a, grid + ph, seed=seed + i, reverse=reverse)
                               for ph in np.linspace(0, 2 * np.pi / frames, loops, endpoint=False)]))
    return layers, trajs
