"""Vector probes: the 8x8 digits, the moving-dot stimulus, and the registry's model checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from polyaudit.errors import PolyauditError
from polyaudit.models.base import Adapter, LoadedModel
from polyaudit.probes.base import ProbeSet
from polyaudit.probes.digits import digits_probe, moving_dot, moving_dot_probe
from polyaudit.probes.registry import build_probe
from polyaudit.profiles import PROFILES

QUICK, DEFAULT = PROFILES["quick"], PROFILES["default"]


class _VectorAdapter(Adapter):
    family = "toy"
    input_kind = "vectors"


class _TokenAdapter(Adapter):
    family = "toy"
    input_kind = "tokens"


def _loaded(
    kind: str = "vectors", probe: ProbeSet | None = None, default: str | None = "digits"
) -> LoadedModel:
    adapter = (_VectorAdapter if kind == "vectors" else _TokenAdapter)(nn.Identity())
    return LoadedModel(
        spec="toy", model=adapter.model, adapter=adapter, probe=probe, default_probe=default
    )


def test_digits_all() -> None:
    probe = digits_probe(DEFAULT, seed=0)
    assert probe.kind == "vectors" and probe.positions is None
    assert tuple(probe.inputs.shape) == (1797, 64) and probe.inputs.dtype == torch.float32
    assert float(probe.inputs.min()) == 0.0 and float(probe.inputs.max()) == 1.0
    assert sorted(set(probe.labels.tolist())) == list(range(10))
    assert probe.label_names == tuple(str(i) for i in range(10))
    assert probe.meta["image_shape"] == (8, 8) and probe.meta["capped"] is False
    assert probe.inputs.reshape(-1, 8, 8).shape == (1797, 8, 8)


def test_digits_capped_stratified() -> None:
    full = digits_probe(DEFAULT, seed=0)
    probe = digits_probe(QUICK, seed=0)
    assert probe.n_samples == QUICK.max_samples and probe.meta["capped"] is True
    want = np.bincount(full.labels) * QUICK.max_samples / full.n_samples
    assert np.all(np.abs(np.bincount(probe.labels) - want) < 1.0)  # class proportions kept
    # The kept images are images of the full set, with their own labels.
    rows = {
        tuple(r): lab
        for r, lab in zip(full.inputs.numpy().tolist(), full.labels.tolist(), strict=True)
    }
    for r, lab in zip(probe.inputs.numpy().tolist()[:50], probe.labels.tolist()[:50], strict=True):
        assert rows[tuple(r)] == lab
    assert probe.digest == digits_probe(QUICK, seed=0).digest != digits_probe(QUICK, seed=1).digest


def test_moving_dot_smooth_and_circular() -> None:
    n, size, radius = 64, 8, 2.5
    frames = moving_dot(n, size, radius, 0.8)
    assert frames.shape == (n, size * size) and frames.dtype == np.float32
    assert frames.min() >= 0.0 and frames.max() <= 1.0
    # successive frames (with the wrap-around) vs frames on opposite sides of the circle
    step = np.linalg.norm(np.diff(frames, axis=0, append=frames[:1]), axis=1)
    far = np.linalg.norm(frames - np.roll(frames, n // 2, axis=0), axis=1)
    assert step.max() < 0.2 * far.min()
    assert step.max() / step.min() < 1.5  # constant speed

    img = frames.reshape(n, size, size)
    grid = np.arange(size)
    cy = (img.sum(2) * grid).sum(1) / img.sum((1, 2))
    cx = (img.sum(1) * grid).sum(1) / img.sum((1, 2))
    c = (size - 1) / 2
    r = np.hypot(cy - c, cx - c)
    assert np.all(np.abs(r - radius) < 0.5) and r.std() < 0.05 * r.mean()  # on a circle ...
    dtheta = np.diff(np.unwrap(np.arctan2(cy - c, cx - c)))
    assert np.allclose(dtheta, 2 * np.pi / n, rtol=0.2)  # ... going round once, evenly


def test_moving_dot_probe() -> None:
    probe = moving_dot_probe()
    assert probe.name == "stimulus:moving-dot" and probe.kind == "vectors" and probe.labels is None
    assert tuple(probe.inputs.shape) == (64, 64)
    with pytest.raises(PolyauditError):
        moving_dot(n_frames=1)


def test_registry_vectors() -> None:
    assert build_probe("digits", _loaded(), QUICK, seed=0).name == "digits"
    assert build_probe(None, _loaded(), QUICK, seed=0).name == "digits"
    assert build_probe("stimulus:moving-dot", _loaded(), QUICK, seed=0).n_samples == 64
    own = moving_dot_probe(n_frames=16)
    assert build_probe(None, _loaded(probe=own), QUICK, seed=0) is own


@pytest.mark.parametrize(
    ("spec", "loaded", "expect"),
    [
        ("digits", _loaded("tokens"), "8x8 images"),
        ("labelled:categories", _loaded(), "tokenizer"),
        (
            "imagenet",
            _loaded(),
            "valid probes: text:stdlib, text:PATH, labelled:categories, digits",
        ),
        ("text:", _loaded(), "names no text"),
        (None, _loaded(default=None), "no default probe"),
    ],
    ids=["digits-on-text", "categories-on-mlp", "unknown", "empty-text", "no-default"],
)
def test_registry_errors(spec: str | None, loaded: LoadedModel, expect: str) -> None:
    with pytest.raises(PolyauditError) as err:
        build_probe(spec, loaded, QUICK, seed=0)
    assert expect in str(err.value) and "\n" not in str(err.value)


def test_registry_min_samples() -> None:
    with pytest.raises(PolyauditError) as err:
        build_probe("digits", _loaded(), QUICK, seed=0, min_samples=5000)
    msg = str(err.value)
    assert "probe digits yields 1024 samples but the profile needs at least 5000" in msg
    assert "\n" not in msg
