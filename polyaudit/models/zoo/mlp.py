"""Zoo recipe `mlp-digits`: a ReLU MLP on scikit-learn's 8x8 digits.

    zoo:mlp-digits[?dropout=0.0&seed=0&width=128&depth=4]

Pixels / 16, flattened to 64; `depth` hidden layers of `width` ReLU units (dropout after each when
`dropout` > 0), a linear read-out to 10 classes. Trained with Adam (lr 2e-3, 40 epochs) on a seeded
train/test split. Varying `dropout` over models identical but for it gives the family the
coding-theory claim needs (Marshall & Kirchner 2024, section 5: dropout promotes redundant codes).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from polyaudit.models.zoo.base import (
    RATE,
    SEED,
    ZooEntry,
    classification_loss,
    on_cpu,
    test_accuracy,
    train_on_digits,
)

EPOCHS = 40
LR = 2e-3


def build_mlp(p: dict[str, Any], g: torch.Generator) -> nn.Module:
    layers: list[nn.Module] = []
    d_in = 64
    for _ in range(p["depth"]):
        layers += [nn.Linear(d_in, p["width"], device="meta"), nn.ReLU()]
        if p["dropout"] > 0:
            layers.append(nn.Dropout(p["dropout"]))
        d_in = p["width"]
    layers.append(nn.Linear(d_in, 10, device="meta"))
    return on_cpu(layers, g)


def train_mlp(net: nn.Module, p: dict[str, Any], progress: bool) -> dict[str, Any]:
    _, y_tr, x_te, y_te = train_on_digits(net, p, name="mlp-digits", epochs=EPOCHS, lr=LR,
                                             loss=classification_loss, progress=progress)
    return {"test_accuracy": round(test_accuracy(net, x_te, y_te), 6), "n_train": len(y_tr),
            "n_test": len(y_te), "epochs": EPOCHS}


ENTRY = ZooEntry(
    name="mlp-digits",
    params={
        "dropout": RATE,
        "seed": SEED,
        "width": (int, 128, lambda v: 1 <= v <= 4096, "in 1..4096"),
        "depth": (int, 4, lambda v: 1 <= v <= 16, "in 1..16"),
    },
    build=build_mlp,
    train=train_mlp,
    default_probe="digits",
    doc="ReLU MLP on scikit-learn's 8x8 digits",
)
