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

import math
from typing import Any

import torch
from torch import nn

from polyaudit.errors import PolyauditError
from polyaudit.models.zoo import REGISTRY, ZooEntry, _forward_train, _one_thread, digits_split

EPOCHS = 20
BATCH = 64
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
    net = nn.Sequential(*layers).to_empty(device="cpu")
    with torch.no_grad():
        for m in net:
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=g)
                fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)
                bound = 1.0 / math.sqrt(fan_in)
                assert m.bias is not None  # every layer here has one
                nn.init.uniform_(m.bias, -bound, bound, generator=g)
    return net


def train_cnn(net: nn.Module, p: dict[str, Any], progress: bool) -> dict[str, Any]:
    """Adam on cross-entropy, one thread, `EPOCHS` epochs of `BATCH` images."""
    from polyaudit.progress import progress_bar

    with _one_thread():
        g = torch.Generator().manual_seed(p["seed"] + 1)
        x_tr, y_tr, x_te, y_te = digits_split(p["seed"])
        opt = torch.optim.Adam(net.parameters(), lr=LR)
        with progress_bar(f"training zoo:cnn-digits (dropout {p['dropout']}, seed {p['seed']})",
                          EPOCHS, progress) as advance:
            for _ in range(EPOCHS):
                order = torch.randperm(len(y_tr), generator=g)
                for i in range(0, len(order), BATCH):
                    idx = order[i : i + BATCH]
                    loss = nn.functional.cross_entropy(_forward_train(net, x_tr[idx], g), y_tr[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                advance(1)
        net.eval()
        with torch.no_grad():
            acc = (net(x_te).argmax(-1) == y_te).float().mean().item()
    return {"test_accuracy": round(acc, 6), "n_train": len(y_tr), "n_test": len(y_te), "epochs": EPOCHS}


def cnn_adapter(net: nn.Module, p: dict[str, Any]) -> Any:
    """The CNN's adapter: per-position channel vectors at the selected positions."""
    from polyaudit.models.conv import ConvAdapter

    return ConvAdapter(net, torch.zeros(2, 64), pos=str(p.get("pos", "center")))


CNN = ZooEntry(
    name="cnn-digits",
    params={
        "dropout": (float, 0.0, lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
        "seed": (int, 0, lambda v: v >= 0, ">= 0"),
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

REGISTRY[CNN.name] = CNN
