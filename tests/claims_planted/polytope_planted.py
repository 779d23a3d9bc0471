"""Planted ground truth for the Polytope Lens claims (C1-C3): small networks whose answer is known.

C1: `monosemantic_layer` — a ReLU layer whose units split in two blocks. "Switch" units have
hyperplanes that separate the classes (each class turns a fixed half of them on, with small
pre-activations), "bulk" units are always on with large, class-independent magnitudes. The spline
codes are a function of the class (plus a little sign noise), while the L2-normalised activation
vectors of different classes nearly coincide (the bulk dominates every direction).

C2/C3: one-dimensional "ramps" built from ReLU units along a known axis, with the output changing
exactly where the boundaries are (`aligned`) or boundaries placed where the output is flat and the
output change carried by a region without boundaries (`control`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def _linear(weight: np.ndarray, bias: np.ndarray) -> nn.Linear:
    lin = nn.Linear(weight.shape[1], weight.shape[0]).double()
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(np.asarray(weight, dtype=np.float64)))
        lin.bias.copy_(torch.from_numpy(np.asarray(bias, dtype=np.float64)))
    return lin


def monosemantic_layer(
    seed: int, n: int = 400, n_classes: int = 4, n_switch: int = 16, n_bulk: int = 32,
    flip: float = 0.05,
) -> tuple[nn.Sequential, np.ndarray, np.ndarray]:
    """(net, inputs [n, d], labels [n]): the net's first Linear is the identity, so its
    pre-activations are the inputs (the planted geometry); a readout follows the ReLU."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), n // n_classes)
    class_signs = rng.choice([-1.0, 1.0], size=(n_classes, n_switch))
    signs = class_signs[labels] * np.where(rng.random((labels.size, n_switch)) < flip, -1.0, 1.0)
    switch = 0.05 * signs * (0.5 + rng.random((labels.size, n_switch)))
    bulk = 1.0 + 3.0 * rng.random((labels.size, n_bulk)) ** 2
    x = np.concatenate([switch, bulk], axis=1)
    d = x.shape[1]
    net = nn.Sequential(_linear(np.eye(d), np.zeros(d)), nn.ReLU(),
                        _linear(rng.standard_normal((n_classes, d)), np.zeros(n_classes)))
    return net.eval(), x, labels


def _steps_net(
    d: int, rises: list[tuple[float, float]], dummies: list[float], gain: float
) -> nn.Sequential:
    """A ReLU net reading x[0] only. Each rise (b, w) is a pair of units, ReLU(x0 - b) -
    ReLU(x0 - b - w): a soft step whose boundaries sit at b and b + w and that changes the output
    only between them. Each dummy unit ReLU(x0 - b) has a boundary at b and no output weight."""
    n_units = 2 * len(rises) + len(dummies)
    w1 = np.zeros((n_units, d))
    w1[:, 0] = 1.0
    bias = np.concatenate([[-b for b, w in rises], [-b - w for b, w in rises], [-b for b in dummies]])
    logit = np.concatenate([np.full(len(rises), gain), np.full(len(rises), -gain), np.zeros(len(dummies))])
    w2 = np.stack([-0.5 * logit, 0.5 * logit])  # two classes: logit difference = the sum of steps
    return nn.Sequential(_linear(w1, bias), nn.ReLU(), _linear(w2, np.zeros(2))).eval()


def boundary_nets(d: int = 3, n_units: int = 24) -> dict[str, nn.Sequential]:
    """Three ReLU nets over inputs whose class is the sign of x0 (|x0| in [0.5, 1], see
    `two_class_inputs`):

    `aligned`: every output change sits between a pair of boundaries: rises near x0 = 0, where the
      classes meet, and at 1.2 <= |x0| <= 3.5, where scaling by c > 1 takes the samples.
    `control_paths` (C2): the output changes on one wide linear ramp (|x0| < 0.45) with no
      boundary inside it, and dummy units (no output weight) put boundaries at 0.55 <= |x0| <= 0.95,
      where paths between the classes run but the output is flat.
    `control_scale` (C3): the same ramp, which scaling by c < 1 enters, and dummy boundaries only at
      1.2 <= |x0| <= 3.5, which scaling by c > 1 crosses while the output stays flat.
    """
    centre = np.linspace(-0.3, 0.25, n_units // 2)
    far = np.linspace(1.2, 3.4, n_units // 4)
    rises = [(b, 0.05) for b in centre] + [(b, 0.1) for b in far] + [(-b - 0.1, 0.1) for b in far]
    ramp = [(-0.45, 0.9)]
    near = list(np.linspace(0.55, 0.95, n_units // 2))
    away = list(np.linspace(1.2, 3.5, n_units // 2))
    return {
        "aligned": _steps_net(d, rises, [], gain=0.6),
        "control_paths": _steps_net(d, ramp, near + [-b for b in near], gain=8.0),
        "control_scale": _steps_net(d, ramp, away + [-b for b in away], gain=8.0),
    }


def aligned_net(seed: int, d: int = 3) -> nn.Sequential:
    """A seeded planted net (C2, C3 power): like `boundary_nets()["aligned"]` (the output changes
    only between pairs of boundaries on x0: soft steps near the class boundary and at
    1.2 <= |x0| <= 3.4, where scaling by c > 1 takes the samples), with the number, places, widths
    and heights of the steps drawn from the seed, a linear trend in x0 that changes the output
    away from any boundary, and inert units (random hyperplanes, output weight 0) whose boundaries
    do not matter."""
    rng = np.random.default_rng([seed, 11])
    n_centre, n_far = int(rng.integers(6, 13)), int(rng.integers(3, 7))
    far = rng.uniform(1.2, 3.3, n_far)
    rises = np.concatenate([
        np.stack([rng.uniform(-0.35, 0.3, n_centre), rng.uniform(0.03, 0.12, n_centre)], axis=1),
        np.stack([far, rng.uniform(0.05, 0.2, n_far)], axis=1),
        np.stack([-far - 0.1, rng.uniform(0.05, 0.2, n_far)], axis=1),
    ])
    heights = rng.uniform(0.3, 0.9, len(rises))
    n_inert = int(rng.integers(4, 9))
    dirs = rng.standard_normal((n_inert, d))
    w1 = np.zeros((2 * len(rises) + n_inert + 1, d))
    w1[: 2 * len(rises), 0] = 1.0
    w1[2 * len(rises):-1] = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    w1[-1, 0] = 1.0  # the linear trend: x0 + 10 > 0 everywhere the claims go
    bias = np.concatenate([-rises[:, 0], -rises.sum(axis=1), rng.uniform(-0.5, 0.5, n_inert), [10.0]])
    slope = heights / rises[:, 1]  # each step rises by its height over its width
    trend = rng.uniform(0.0, 1.0)
    logit = np.concatenate([slope, -slope, np.zeros(n_inert), [trend]])
    w2 = np.stack([-0.5 * logit, 0.5 * logit])
    at_zero = float(heights @ np.clip(-rises[:, 0] / rises[:, 1], 0.0, 1.0))  # the steps' sum at x0 = 0
    shift = 5.0 * trend + at_zero / 2  # logit difference: trend * x0 + the steps, 0 at x0 = 0
    b2 = np.array([shift, -shift])
    return nn.Sequential(_linear(w1, bias), nn.ReLU(), _linear(w2, b2)).eval()


def two_class_inputs(seed: int, n: int = 200, d: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Inputs with x0 in +-[0.5, 1] (class = sign of x0) and d - 1 noise coordinates."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    x0 = np.where(labels == 1, 1.0, -1.0) * rng.uniform(0.5, 1.0, n)
    x = np.concatenate([x0[:, None], rng.uniform(-0.5, 0.5, (n, d - 1))], axis=1)
    return x, labels
