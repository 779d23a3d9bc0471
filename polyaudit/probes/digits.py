"""Vector probes: scikit-learn's 8x8 digits, and a moving-dot stimulus.

`digits` are the images the zoo models are trained on (pixel values / 16, flattened to 64 floats),
labelled by class. The moving dot (a Gaussian blob travelling on a circle, frame by frame) is the
smooth stimulus of Marshall & Kirchner 2024 (sec. 5, Fig. 4): the smoothness of random projections
of its hidden trajectory is compared with the spectral decay alpha.
"""

from __future__ import annotations

import numpy as np
import torch

from polyaudit.errors import PolyauditError
from polyaudit.probes.base import ProbeSet
from polyaudit.profiles import Profile

IMAGE_SHAPE = (8, 8)


def _stratified(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of n samples, each class in proportion to its frequency (largest remainder)."""
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * n / labels.size
    take = np.floor(quota).astype(np.int64)
    extra = n - int(take.sum())
    take[np.argsort(-(quota - take), kind="stable")[:extra]] += 1
    picked = [
        rng.choice(np.flatnonzero(labels == c), size=int(t), replace=False)
        for c, t in zip(classes, take, strict=True)
    ]
    return np.sort(np.concatenate(picked))


def digits_probe(profile: Profile, seed: int) -> ProbeSet:
    """scikit-learn's 8x8 digits as float32 [n, 64] in [0, 1], labels 0..9; at most
    profile.max_samples images, class-stratified with `numpy.random.default_rng(seed)`."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (np.asarray(data.data, dtype=np.float32) / np.float32(16.0)).reshape(
        -1, IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
    )
    y = np.asarray(data.target, dtype=np.int64)
    n_total = int(y.size)
    if profile.max_samples < 10:
        raise PolyauditError(
            f"digits needs at least 10 samples (one per class), the profile allows {profile.max_samples}"
        )
    capped = profile.max_samples < n_total
    idx = (
        _stratified(y, profile.max_samples, np.random.default_rng(seed))
        if capped
        else np.arange(n_total)
    )
    return ProbeSet(
        name="digits",
        kind="vectors",
        inputs=torch.from_numpy(np.ascontiguousarray(x[idx])),
        labels=y[idx],
        label_names=tuple(str(i) for i in range(10)),
        meta={"image_shape": IMAGE_SHAPE, "n_total": n_total, "capped": capped, "seed": seed},
    )


def moving_dot(
    n_frames: int = 64, size: int = 8, radius: float = 2.5, sigma: float = 0.8
) -> np.ndarray:
    """float32 [n_frames, size * size]: a Gaussian dot (peak 1, width sigma pixels) moving once
    around a circle of `radius` pixels about the image centre, one step of 2*pi/n_frames per frame."""
    if n_frames < 2 or size < 1 or sigma <= 0:
        raise PolyauditError(
            f"moving_dot needs n_frames >= 2, size >= 1, sigma > 0 (got {n_frames}, {size}, {sigma})"
        )
    c = (size - 1) / 2.0
    theta = 2.0 * np.pi * np.arange(n_frames) / n_frames
    cy = c + radius * np.sin(theta)
    cx = c + radius * np.cos(theta)
    grid = np.arange(size, dtype=np.float64)
    dy = (grid[None, :, None] - cy[:, None, None]) ** 2
    dx = (grid[None, None, :] - cx[:, None, None]) ** 2
    frames = np.exp(-(dy + dx) / (2.0 * sigma**2))
    return frames.reshape(n_frames, size * size).astype(np.float32)


def moving_dot_probe(
    n_frames: int = 64, size: int = 8, radius: float = 2.5, sigma: float = 0.8
) -> ProbeSet:
    """The moving-dot frames as a vector probe (`stimulus:moving-dot`), no labels."""
    frames = moving_dot(n_frames, size, radius, sigma)
    return ProbeSet(
        name="stimulus:moving-dot",
        kind="vectors",
        inputs=torch.from_numpy(frames),
        meta={"image_shape": (size, size), "n_frames": n_frames, "radius": radius, "sigma": sigma},
    )
