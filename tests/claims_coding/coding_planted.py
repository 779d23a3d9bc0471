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
N_TASK = 2  # the label reads the first N_TASK features: every model codes them (12 / max(COPIES) = 2)
COPIES = (1, 2, 3, 4, 6)  # copies per feature at the nominal rates 0, .2, .4, .6, .8 (divide 12)
RATES = (0.0, 0.2, 0.4, 0.6, 0.8)
WIDTH = 2 * N_FEATURES  # hidden units: every level uses all of them
N_PROBE = 600
NOISE = 0.05  # weight of each unit's private noise input (keeps the spectrum free of exact zeros)
INPUT_COPIES = max(COPIES)  # the probe carries every signal feature this many times
N_INPUTS = INPUT_COPIES * N_FEATURES + WIDTH


def planted_probe(seed: int = 0) -> ProbeSet:
    """Inputs [n, INPUT_COPIES * N_FEATURES + WIDTH]: INPUT_COPIES identical copies of the signal
    features (variances 1/j), then one private noise input per hidden unit; labels: argmax of a
    random linear readout of the first N_TASK signal features (the ones every model of the family
    codes, so that clean accuracy does not depend on the rate and robustness is not measured
    against a model near chance)."""
    rng, n = np.random.default_rng(seed), N_PROBE
    scale = 1.0 / np.sqrt(np.arange(1, N_FEATURES + 1))
    signal = rng.standard_normal((n, N_FEATURES)) * scale
    noise = rng.standard_normal((n, WIDTH))
    readout = _on_task(rng.standard_normal((N_FEATURES, N_CLASSES)))
    labels = (signal @ readout).argmax(1)
    x = np.concatenate([np.tile(signal, INPUT_COPIES), noise], axis=1).astype(np.float32)
    return ProbeSet(name="planted:redundancy", kind="vectors", inputs=torch.from_numpy(x),
                    labels=labels.astype(np.int64), label_names=tuple(map(str, range(N_CLASSES))),
                    meta={"readout_seed": seed})


def redundant_net(copies: int, probe_seed: int = 0, seed: int = 0) -> nn.Sequential:
    """Two ReLU layers of WIDTH units coding the N_FEATURES / copies strongest features, each as
    `copies` copies of a (+x, -x) unit pair (fixed width, so more copies = fewer distinct features:
    the trade of Thm. 3), each copy reading its own copy of the feature in the input (so losing an
    input, a unit or a unit's precision costs one copy), plus a small private noise input per unit.
    The second layer passes the first through; the readout averages the copies and applies the
    task's readout."""
    rng = np.random.default_rng([seed, copies])
    n_kept = N_FEATURES // copies
    v = _task_readout(probe_seed)
    w1 = np.zeros((WIDTH, N_INPUTS))
    w2 = np.eye(WIDTH)
    w3 = np.zeros((N_CLASSES, WIDTH))
    unit = 0
    for j in range(n_kept):
        for c in range(copies):
            col = c * N_FEATURES + j
            w1[unit, col], w1[unit + 1, col] = 1.0, -1.0
            w3[:, unit], w3[:, unit + 1] = v[j] / copies, -v[j] / copies
            unit += 2
    w1[:, INPUT_COPIES * N_FEATURES:] = np.diag(rng.uniform(0.5, 1.5, WIDTH) * NOISE)
    net = nn.Sequential(nn.Linear(N_INPUTS, WIDTH), nn.ReLU(), nn.Linear(WIDTH, WIDTH), nn.ReLU(),
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
    return _on_task(rng.standard_normal((N_FEATURES, N_CLASSES)))


def _on_task(readout: np.ndarray) -> np.ndarray:
    """The readout with the rows past N_TASK zeroed: only the strongest features decide the label."""
    out = readout.copy()
    out[N_TASK:] = 0.0
    return out


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


# --- depth profiles: nulls and planted effects of the layer-trend statistics (C4, C5 single, C6) ---
def random_walk(n_layers: int, step: float, rng: np.random.Generator, start: float = 0.0,
                bounds: tuple[float, float] = (-np.inf, np.inf)) -> np.ndarray:
    """[n_layers] a Gaussian random walk from `start` with steps of SD `step`, reflected at `bounds`:
    a smooth depth profile with no reason to follow any other."""
    lo, hi = bounds
    out = np.empty(n_layers)
    v = start
    for i in range(n_layers):
        out[i] = v
        v = v + step * rng.standard_normal()
        while not lo <= v <= hi:
            v = 2 * lo - v if v < lo else 2 * hi - v
    return out


def _layer(i: int, x: np.ndarray) -> SiteData:
    return SiteData(site=Site(layer=i, kind="resid", module=f"planted.{i}"), samples=x.astype(np.float32),
                    groups=np.arange(x.shape[0]), labels=None, n_nonfinite=0)


def alpha_layers(alphas: np.ndarray | tuple[float, ...], n: int, rng: np.random.Generator,
                 d: int = 32) -> list[SiteData]:
    """One layer per alpha: n Gaussian samples whose covariance has eigenvalues i^alpha (i = 1..d)
    in a random basis; independent samples and rotation at every layer."""
    scale = np.arange(1, d + 1, dtype=float)
    out = []
    for i, a in enumerate(alphas):
        q, _ = np.linalg.qr(rng.standard_normal((d, d)))
        out.append(_layer(i, (rng.standard_normal((n, d)) * scale ** (a / 2)) @ q))
    return out


def residual_layers(n_layers: int, n: int, rng: np.random.Generator, d: int = 32, alpha: float = -1.0,
                    update: float = 0.15) -> list[SiteData]:
    """A randomly initialised residual stream: the same n samples at every layer, each layer adding a
    small random update tanh(x W) (W ~ N(0, 1/d)) to the last: the alphas differ by a few hundredths
    between layers, measured on the same samples (what a random-init encoder shows)."""
    x = (rng.standard_normal((n, d)) * np.arange(1, d + 1, dtype=float) ** (alpha / 2)) @ \
        np.linalg.qr(rng.standard_normal((d, d)))[0]
    out = []
    for i in range(n_layers):
        out.append(_layer(i, x))
        x = x + update * np.tanh(x @ rng.standard_normal((d, d)) / np.sqrt(d)) * x.std()
    return out


def _roughness(frames: int) -> np.ndarray:
    """w[f]: relative action of a mode of frequency f on a closed loop of `frames` frames."""
    return 2.0 * np.sin(np.pi * np.arange(frames // 2) / frames) ** 2


def shaped_fourier_layers(alphas: np.ndarray | tuple[float, ...], log_actions: np.ndarray | tuple[float, ...],
                          rng: np.random.Generator, n: int = 800, frames: int = 64, loops: int = 4,
                          n_modes: int = 24, n_candidates: int = 4000
                          ) -> tuple[list[SiteData], list[np.ndarray], np.ndarray]:
    """Codes on a circle (as `fourier_code`) with spectrum exponent alphas[l] whose relative action is
    as close as it gets to exp(log_actions[l]): the modes (rank i has variance i^alpha) get distinct
    frequencies below frames / 2, chosen among `n_candidates` assignments (from smooth, rank i at
    frequency ~i, to scrambled). The spectrum does not depend on the assignment, the action does, so
    alpha and the action are set independently. Every layer is rotated by one random basis. Returns (probe layers at n random angles,
    trajectories [loops, frames, 2 n_modes], the log relative actions achieved)."""
    s = rng.uniform(0, 2 * np.pi, n)
    grid = 2 * np.pi * np.arange(frames) / frames
    w = _roughness(frames)
    pool = np.arange(1, frames // 2)
    q, _ = np.linalg.qr(rng.standard_normal((2 * n_modes, 2 * n_modes)))  # one basis: the action's projection
    layers, trajs, got = [], [], []  # noise is then shared by the layers, not added to their changes
    for i, (a, target) in enumerate(zip(alphas, log_actions, strict=True)):
        p = np.arange(1, n_modes + 1, dtype=float) ** a
        subsets = np.sort(rng.permuted(np.tile(pool, (n_candidates, 1)), axis=1)[:, :n_modes], axis=1)
        sigma = np.geomspace(0.05, 200, n_candidates)[:, None]
        order = np.argsort(np.arange(n_modes) + sigma * rng.standard_normal((n_candidates, n_modes)), axis=1)
        freqs = np.take_along_axis(subsets, np.argsort(order, axis=1), axis=1)  # rank r -> its frequency
        log_r = np.log((w[freqs] @ p) / p.sum())
        best = int(np.argmin(np.abs(log_r - target)))
        freq, amp = freqs[best], np.sqrt(p)

        def code(angles: np.ndarray, freq: np.ndarray = freq, amp: np.ndarray = amp, q: np.ndarray = q) -> np.ndarray:
            return np.concatenate([amp * np.cos(np.outer(angles, freq)), amp * np.sin(np.outer(angles, freq))],
                                  axis=1) @ q

        layers.append(_layer(i, code(s)))
        trajs.append(np.stack([code(grid + ph) for ph in np.linspace(0, 2 * np.pi / frames, loops, endpoint=False)]))
        got.append(log_r[best])
    return layers, trajs, np.array(got)


def correlated_steps(n_steps: int, r: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two [n_steps] standard Gaussian step sequences whose pairs have correlation r: the increments
    of two depth profiles whose layer-to-layer changes have Spearman (6 / pi) arcsin(r / 2)."""
    a = rng.standard_normal(n_steps)
    return a, r * a + np.sqrt(1.0 - r * r) * rng.standard_normal(n_steps)


def spearman_of_gaussian(r: float) -> float:
    """The population Spearman correlation of a bivariate Gaussian with Pearson correlation r."""
    return float(6.0 / np.pi * np.arcsin(r / 2.0))


def walk_profile(steps: np.ndarray, scale: float, centre: float) -> np.ndarray:
    """[len(steps) + 1] the walk with these steps (times `scale`), shifted so its mean is `centre`."""
    walk = np.concatenate([[0.0], np.cumsum(scale * steps)])
    return walk - walk.mean() + centre
