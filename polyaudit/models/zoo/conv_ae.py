"""Zoo recipe `conv-ae-digits`: a small convolutional autoencoder on scikit-learn's 8x8 digits.

    zoo:conv-ae-digits[?dropout=0.0&seed=0&width=8&latent=16]

The coding-theory paper's own family (Marshall & Kirchner 2024, sec. 5, Fig. 5) is a ResNet-18 VAE
on CIFAR-10 with dropout after every encoder ReLU at rates 0, 0.2, 0.4, 0.6, 0.8. This is the same
experiment at the scale of the digits, trainable on a CPU in seconds:

    encoder  1x8x8 -conv3x3-> width x8x8 -ReLU-[drop]- -conv3x3/2-> 2width x4x4 -ReLU-[drop]-
             -linear-> latent -ReLU-[drop]-
    decoder  -linear-> 2width x4x4 -ReLU- -convT4x4/2-> width x8x8 -ReLU- -conv3x3-> 1x8x8

Input and output are flat [n, 64] (pixels / 16), so it takes the `digits` probe like `mlp-digits`;
the output is linear (no sigmoid, which would be one more "layer" to the sequential adapter). Its
sites are the five ReLUs (three encoder, two decoder). Trained with Adam on the mean squared
reconstruction error; dropout masks, init, split and batches all come from generators seeded by
`seed` (see `polyaudit.models.zoo`). Metrics: test MSE, the MSE of predicting the mean image, and
their ratio as R^2.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from polyaudit.models.zoo.base import (
    RATE,
    SEED,
    ZooEntry,
    on_cpu,
    reconstruction_loss,
    train_on_digits,
)
from polyaudit.threads import torch_threads

EPOCHS = 40
LR = 3e-3


def build_conv_ae(p: dict[str, Any], g: torch.Generator) -> nn.Module:
    """The autoencoder of parameters `p` (dropout, width, latent), initialised from `g` exactly as
    torch's default init would, but without touching the global RNG."""
    c, z, rate = p["width"], p["latent"], p["dropout"]

    def drop() -> list[nn.Module]:
        return [nn.Dropout(rate)] if rate > 0 else []

    layers: list[nn.Module] = [
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, c, 3, padding=1, device="meta"), nn.ReLU(), *drop(),
        nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, device="meta"), nn.ReLU(), *drop(),
        nn.Flatten(),
        nn.Linear(2 * c * 16, z, device="meta"), nn.ReLU(), *drop(),
        nn.Linear(z, 2 * c * 16, device="meta"), nn.ReLU(),
        nn.Unflatten(1, (2 * c, 4, 4)),
        nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1, device="meta"), nn.ReLU(),
        nn.Conv2d(c, 1, 3, padding=1, device="meta"),
        nn.Flatten(),
    ]
    return on_cpu(layers, g)


def train_conv_ae(net: nn.Module, p: dict[str, Any], progress: bool) -> dict[str, Any]:
    """Adam on the reconstruction MSE, one thread, `EPOCHS` epochs."""
    x_tr, _, x_te, _ = train_on_digits(net, p, name="conv-ae-digits", epochs=EPOCHS, lr=LR,
                                       loss=reconstruction_loss, progress=progress)
    with torch_threads(1), torch.no_grad():
        mse = nn.functional.mse_loss(net(x_te), x_te).item()
        base = nn.functional.mse_loss(x_tr.mean(0, keepdim=True).expand_as(x_te), x_te).item()
    return {
        "test_mse": round(mse, 6),
        "mean_image_mse": round(base, 6),
        "test_r2": round(1.0 - mse / base, 6),
        "n_train": int(x_tr.shape[0]),
        "n_test": int(x_te.shape[0]),
        "epochs": EPOCHS,
    }


ENTRY = ZooEntry(
    name="conv-ae-digits",
    params={
        "dropout": RATE,
        "seed": SEED,
        "width": (int, 8, lambda v: 1 <= v <= 256, "in 1..256"),
        "latent": (int, 16, lambda v: 1 <= v <= 1024, "in 1..1024"),
    },
    build=build_conv_ae,
    train=train_conv_ae,
    default_probe="digits",
    doc="convolutional autoencoder on scikit-learn's 8x8 digits (dropout after every encoder ReLU)",
)
