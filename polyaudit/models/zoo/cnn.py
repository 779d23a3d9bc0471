"""Zoo recipe `cnn-digits`: a small ReLU CNN classifier on scikit-learn's 8x8 digits.

    zoo:cnn-digits[?dropout=0.0&seed=0&width=24&pos=center]

Both papers studied image CNNs (Polytope Lens: InceptionV1 read at one spatial position; coding
theory: a ResNet-18 autoencoder). This is the smallest such subject that trains on a CPU in
seconds:

    1x8x8 -conv3x3-> w x8x8 -ReLU-[drop]- -conv3x3/2-> w x4x4 -ReLU-[drop]-
          -conv3x3-> w x4x4 -ReLU-[drop]- -conv3x3-> w x4x4 -ReLU-[drop]-
          -global average pool-> w -linear-> 10 classes

(w = 24 channels by default: C1's K = 20 clusters need at least K units per position for the
`neuron` baseline).

Input is flat [n, 64] (pixels / 16), so it takes the `digits` probe and the moving-dot stimulus
like the other zoo models. Its sites are the four ReLUs, read as per-position channel vectors
(`polyaudit.models.conv.ConvAdapter`); `pos` picks the positions (`center`, `all`, or `I,J` on
the 8x8 map) and changes only how the trained model is read, never the training or its cache entry.
Trained with Adam on cross-entropy; init, split, batches and dropout masks (elementwise, after
every ReLU, as in `mlp-digits`) all come from generators seeded by `seed`; one thread.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from polyaudit.errors import PolyauditError
from polyaudit.models.zoo.base import (
    RATE,
    SEED,
    ZooEntry,
    classification_loss,
    on_cpu,
    test_accuracy,
    train_on_digits,
)

EPOCHS = 20
LR = 3e-3


def _valid_pos(text: Any) -> bool:
    from polyaudit.models.conv import parse_pos

    try:
        parse_pos(str(text))
    except PolyauditError:
        return False
    return True


def build_cnn(p: dict[str, Any], g: torch.Generator) -> nn.Module:
    """The CNN of parameters `p` (dropout, width), initialised from `g` as torch's default init
    would, without touching the global RNG."""
    c, rate = p["width"], p["dropout"]

    def block(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, device="meta"), nn.ReLU(),
                *([nn.Dropout(rate)] if rate > 0 else [])]

    layers: list[nn.Module] = [
        nn.Unflatten(1, (1, 8, 8)),
        *block(1, c, 1), *block(c, c, 2), *block(c, c, 1), *block(c, c, 1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10, device="meta"),
    ]
    return on_cpu(layers, g)


def train_cnn(net: nn.Module, p: dict[str, Any], progress: bool) -> dict[str, Any]:
    """Adam on cross-entropy, one thread, `EPOCHS` epochs."""
    _, y_tr, x_te, y_te = train_on_digits(net, p, name="cnn-digits", epochs=EPOCHS, lr=LR,
                                             loss=classification_loss, progress=progress)
    return {"test_accuracy": round(test_accuracy(net, x_te, y_te), 6), "n_train": len(y_tr),
            "n_test": len(y_te), "epochs": EPOCHS}


def cnn_adapter(net: nn.Module, p: dict[str, Any]) -> Any:
    """The CNN's adapter: per-position channel vectors at the selected positions."""
    from polyaudit.models.conv import ConvAdapter

    return ConvAdapter(net, torch.zeros(2, 64), pos=str(p.get("pos", "center")))


ENTRY = ZooEntry(
    name="cnn-digits",
    params={
        "dropout": RATE,
        "seed": SEED,
        "width": (int, 24, lambda v: 1 <= v <= 256, "in 1..256"),
        "pos": (str, "center", _valid_pos, "center, all or I,J"),
    },
    build=build_cnn,
    train=train_cnn,
    default_probe="digits",
    doc="ReLU CNN classifier on scikit-learn's 8x8 digits (sites: per-position channel vectors)",
    adapter=cnn_adapter,
    view_params=("pos",),
)
