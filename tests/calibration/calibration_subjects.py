"""Null and planted subjects for the calibration and power studies (tests/calibration).

Planted subjects are the ones the planted-ground-truth tests already use (tests/claims_planted,
tests/claims_coding), with every seed varying the construction. Null subjects are built so that
the claim's prediction has no reason to hold:

- `decoupled_net` (C2, C3): a ReLU net whose boundaries cannot change its output. The output is a
  linear function of x0 (through one unit that is on everywhere on the data, so it has no boundary
  there); 24 further units have output weight 0 and cut the noise coordinates (x1, x2), every
  coordinate, or the label axis x0 where the output changes (`axis`), with hyperplanes through the
  data. Paths and rays cross their boundaries, and the output changes: along the label axis at the
  same places, for the same geometric reason, yet the boundaries change nothing.
- `random_relu_net` (C2, C3): a He-initialised random ReLU MLP. Its output does change at its
  boundaries (slopes change there): the kind of subject a control twin is; C2 and C3 are held to the
  null's rule on it.
- `iid_power_law_layers` (C4, C5 single, C6): every layer an independent sample of one and the same
  power-law distribution (random rotation per layer): alpha does not change with depth.
- `permuted_fourier_layers` (C6): codes on a circle whose spectra follow different power laws, but
  whose variance ranks are assigned to frequencies in a random order, so a layer's smoothness has
  no reason to follow its alpha.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from torch import nn

HERE = Path(__file__).resolve().parent
for _folder in ("claims_planted", "claims_coding"):  # the planted helpers live beside their tests
    _path = str(HERE.parent / _folder)
    if _path not in sys.path:
        sys.path.insert(0, _path)

from coding_planted import (  # noqa: E402
    COPIES,
    RATES,
    fourier_layers,
    planted_probe,
    redundant_net,
    subject_of,
)
from polytope_planted import (  # noqa: E402
    _linear,
    aligned_net,
    boundary_nets,
    monosemantic_layer,
    two_class_inputs,
)

from polyaudit.capture import SiteData  # noqa: E402
from polyaudit.models.base import Site  # noqa: E402

__all__ = [
    "COPIES", "RATES", "aligned_net", "boundary_nets", "decoupled_net", "fourier_layers", "iid_power_law_layers",
    "monosemantic_layer", "permuted_fourier_layers", "planted_probe", "power_law_layers",
    "random_relu_net", "redundant_net", "subject_of", "two_class_inputs",
]


def decoupled_net(seed: int, d: int = 3, n_dummy: int = 24, gain: float = 4.0, axis: str = "noise") -> nn.Sequential:
    """Two-class net over `two_class_inputs`: logit difference gain * x0 (through one unit that is
    on everywhere on the data, scaled up to 4 or moved along a class direction), and `n_dummy`
    units with output weight 0 whose hyperplanes are
    - "noise": random, in the noise coordinates (x1, x2) only;
    - "all": random, in every coordinate (the label axis included), through the data;
    - "label": perpendicular to the label axis x0, at offsets where the output changes most (|x0|
      below 0.8, where gain * x0 is the steep part of the softmax): paths between the classes and
      scalings of an input cross them exactly where the output changes, and where they cross them
      depends on the input's x0 as the change does (boundaries and semantic change share a
      geometric cause; none of the boundaries can change the output)."""
    rng = np.random.default_rng([seed, 8])
    w = np.zeros((1 + n_dummy, d))
    b = np.zeros(1 + n_dummy)
    w[0, 0], b[0] = 1.0, 10.0  # x0 + 10 > 0 on the data (|x0| <= 1, scaled up to 4): no boundary
    if axis == "label":
        w[1:, 0] = rng.choice([-1.0, 1.0], n_dummy)
        b[1:] = -rng.uniform(-0.8, 0.8, n_dummy) * w[1:, 0]  # boundary at x0 = offset
    else:
        first = 1 if axis == "noise" else 0
        dirs = rng.standard_normal((n_dummy, d - first))
        w[1:, first:] = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
        b[1:] = rng.uniform(-0.4, 0.4, n_dummy)  # through the data's range (+-0.5 and more)
    out = np.zeros((2, 1 + n_dummy))
    out[:, 0] = (-gain / 2, gain / 2)
    return nn.Sequential(_linear(w, b), nn.ReLU(),
                         _linear(out, np.array([10 * gain / 2, -10 * gain / 2]))).eval()


def random_relu_net(seed: int, d: int = 3, width: int = 32, depth: int = 2) -> nn.Sequential:
    rng = np.random.default_rng([seed, 7])
    mods: list[nn.Module] = []
    d_in = d
    for _ in range(depth):
        mods += [_linear(rng.standard_normal((width, d_in)) * np.sqrt(2 / d_in),
                         0.1 * rng.standard_normal(width)), nn.ReLU()]
        d_in = width
    mods.append(_linear(rng.standard_normal((2, d_in)) / np.sqrt(d_in), np.zeros(2)))
    return nn.Sequential(*mods).eval()


def _site_data(i: int, x: np.ndarray) -> SiteData:
    return SiteData(site=Site(layer=i, kind="resid", module=f"planted.{i}"), samples=x.astype(np.float32),
                    groups=np.arange(x.shape[0]), labels=None, n_nonfinite=0)


def power_law_layers(alphas: tuple[float, ...], n: int, rng: np.random.Generator, d: int = 64) -> list[SiteData]:
    """One layer per alpha: n Gaussian samples whose covariance has eigenvalues i^alpha, i = 1..d,
    in a random basis (independent samples and rotation per layer)."""
    out = []
    for i, a in enumerate(alphas):
        x = rng.standard_normal((n, d)) * np.arange(1, d + 1) ** (a / 2)
        q, _ = np.linalg.qr(rng.standard_normal((d, d)))
        out.append(_site_data(i, x @ q))
    return out


def iid_power_law_layers(n_layers: int, n: int, rng: np.random.Generator, alpha: float = -1.0) -> list[SiteData]:
    return power_law_layers((alpha,) * n_layers, n, rng)


def permuted_fourier_layers(alphas: tuple[float, ...], rng: np.random.Generator, n: int = 800, frames: int = 64,
                            loops: int = 4, n_modes: int = 24) -> tuple[list[SiteData], list[np.ndarray]]:
    """Like `coding_planted.fourier_layers`, but the variance i^alpha of rank i goes to a random
    frequency (a fresh permutation per layer): the spectrum is a power law with exponent alpha,
    and the code's smoothness along the circle is unrelated to it."""
    s = rng.uniform(0, 2 * np.pi, n)
    grid = 2 * np.pi * np.arange(frames) / frames
    layers, trajs = [], []
    for i, a in enumerate(alphas):
        freq = rng.permutation(np.arange(1, n_modes + 1))
        amp = np.sqrt(np.arange(1, n_modes + 1, dtype=float) ** a)
        q, _ = np.linalg.qr(rng.standard_normal((2 * n_modes, 2 * n_modes)))

        def code(angles: np.ndarray, freq: np.ndarray = freq, amp: np.ndarray = amp,
                 q: np.ndarray = q) -> np.ndarray:
            return np.concatenate([amp * np.cos(np.outer(angles, freq)), amp * np.sin(np.outer(angles, freq))],
                                  axis=1) @ q

        layers.append(_site_data(i, code(s)))
        trajs.append(np.stack([code(grid + ph) for ph in np.linspace(0, 2 * np.pi / frames, loops, endpoint=False)]))
    return layers, trajs
