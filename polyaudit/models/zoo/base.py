"""What every zoo recipe shares: the entry type, the digits data, torch's default init drawn from a
seeded generator, and the one training loop.

All randomness (init, split, batches, dropout masks) comes from generators seeded by the recipe's
`seed`; no global RNG is touched. Training runs on one thread: faster at these sizes, and the same
floating-point reductions whatever the core count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from polyaudit.progress import progress_bar
from polyaudit.threads import torch_threads

Param = tuple[type, Any, Callable[[Any], bool], str]  # type, default, check, what the check means
RATE: Param = (float, 0.0, lambda v: 0.0 <= v < 1.0, "in [0, 1)")
SEED: Param = (int, 0, lambda v: v >= 0, ">= 0")
BATCH = 64
INIT_TYPES = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model: its parameters, how to build and train it, and the probe it comes with."""

    name: str
    params: Mapping[str, Param]
    build: Callable[[dict[str, Any], torch.Generator], nn.Module]
    train: Callable[[nn.Module, dict[str, Any], bool], dict[str, Any]]  # -> metrics
    default_probe: str
    doc: str
    adapter: Callable[[nn.Module, dict[str, Any]], Any] | None = None  # None: SequentialAdapter
    view_params: tuple[str, ...] = ()  # how the model is read (e.g. pos): not in training or cache key


def digits_split(seed: int, test_fraction: float = 0.25) -> tuple[torch.Tensor, ...]:
    """scikit-learn's digits as float32 (pixels / 16, 64 features): (x_train, y_train, x_test,
    y_test), split by a permutation seeded by `seed`."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.from_numpy((data.data / 16.0).astype(np.float32))
    y = torch.from_numpy(data.target.astype(np.int64))
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(y)))
    n_test = round(len(y) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def on_cpu(layers: list[nn.Module], g: torch.Generator) -> nn.Sequential:
    """An nn.Sequential of `layers` built on "meta" (torch's own init would draw from the global
    RNG), materialised on the CPU and initialised as torch's default init would, from `g`."""
    net = nn.Sequential(*layers).to_empty(device="cpu")
    with torch.no_grad():
        for m in net:
            if isinstance(m, INIT_TYPES):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=g)
                fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)
                bound = 1.0 / math.sqrt(fan_in)
                assert m.bias is not None  # every zoo layer has one
                nn.init.uniform_(m.bias, -bound, bound, generator=g)
    return net


def forward_train(net: nn.Module, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Training forward with dropout masks drawn from `g` (nn.Dropout would use the global RNG)."""
    for m in net:  # type: ignore[attr-defined]
        if isinstance(m, nn.Dropout):
            keep = torch.rand(x.shape, generator=g) >= m.p
            x = x * keep / (1.0 - m.p)
        else:
            x = m(x)
    return x


Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (output, x, y) -> loss


def classification_loss(out: torch.Tensor, _x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(out, y)


def reconstruction_loss(out: torch.Tensor, x: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(out, x)


def train_on_digits(net: nn.Module, p: Mapping[str, Any], *, name: str, epochs: int, lr: float,
                    loss: Loss, progress: bool) -> tuple[torch.Tensor, ...]:
    """The zoo's training loop: Adam on `loss` over the digits' training split, `epochs` epochs of
    BATCH inputs in a seeded order, dropout masks from the same generator, one thread. Leaves `net`
    in eval mode and returns the split (x_train, y_train, x_test, y_test) for the recipe's metrics."""
    with torch_threads(1):
        g = torch.Generator().manual_seed(p["seed"] + 1)
        x_tr, y_tr, x_te, y_te = digits_split(p["seed"])
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        label = f"training zoo:{name} (dropout {p['dropout']}, seed {p['seed']})"
        with progress_bar(label, total=epochs, enabled=progress) as advance:
            for _epoch in range(epochs):
                order = torch.randperm(len(y_tr), generator=g)
                for i in range(0, len(order), BATCH):
                    idx = order[i : i + BATCH]
                    out = forward_train(net, x_tr[idx], g)
                    step = loss(out, x_tr[idx], y_tr[idx])
                    opt.zero_grad()
                    step.backward()
                    opt.step()
                advance(1)
        net.eval()
    return x_tr, y_tr, x_te, y_te


def test_accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch_threads(1), torch.no_grad():
        return float((net(x).argmax(-1) == y).float().mean().item())
