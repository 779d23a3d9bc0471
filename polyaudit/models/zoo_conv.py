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

import math
from typing import Any

import torch
from torch import nn

from polyaudit.models.zoo import REGISTRY, ZooEntry, _forward_train, _one_thread, digits_split

EPOCHS = 40
BATCH = 64
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
    net = nn.Sequential(*layers).to_empty(device="cpu")
    with torch.no_grad():
        for m in net:
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=g)
                fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)
                bound = 1.0 / math.sqrt(fan_in)
                assert m.bias is not None  # every layer here has one
                nn.init.uniform_(m.bias, -bound, bound, generator=g)
    return net


def train_conv_ae(net: nn.Module, p: dict[str, Any], progress: bool) -> dict[str, Any]:
    """Adam on the reconstruction MSE, one thread, `EPOCHS` epochs of `BATCH` images."""
    from polyaudit.progress import progress_bar

    with _one_thread():
        g = torch.Generator().manual_seed(p["seed"] + 1)
        x_tr, _, x_te, _ = digits_split(p["seed"])
        opt = torch.optim.Adam(net.parameters(), lr=LR)
        with progress_bar(f"training zoo:conv-ae-digits (dropout {p['dropout']}, seed {p['seed']})",
                          EPOCHS, progress) as advance:
            for _ in range(EPOCHS):
                order = torch.randperm(x_tr.shape[0], generator=g)
                for i in range(0, len(order), BATCH):
                    xb = x_tr[order[i : i + BATCH]]
                    loss = nn.functional.mse_loss(_forward_train(net, xb, g), xb)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                advance(1)
        net.eval()
        with torch.no_grad():
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


CONV_AE = ZooEntry(
    name="conv-ae-digits",
    params={
        "dropout": (float, 0.0, lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
        "seed": (int, 0, lambda v: v >= 0, ">= 0"),
        "width": (int, 8, lambda v: 1 <= v <= 256, "in 1..256"),
        "latent": (int, 16, lambda v: 1 <= v <= 1024, "in 1..1024"),
    },
    build=build_conv_ae,
    train=train_conv_ae,
    default_probe="digits",
    doc="convolutional autoencoder on scikit-learn's 8x8 digits (dropout after every encoder ReLU)",
)

REGISTRY[CONV_AE.name] = CONV_AE
