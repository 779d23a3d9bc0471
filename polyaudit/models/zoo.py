"""The built-in zoo: small models trained on first use, deterministic from the seed, cached.

    zoo:mlp-digits[?dropout=0.0&seed=0&width=128&depth=4]

`mlp-digits` is a ReLU MLP on scikit-learn's 8x8 digits (pixels / 16, flattened to 64), trained
with Adam on a seeded train/test split. Varying `dropout` over models identical but for it gives
the family the coding-theory claim needs (Marshall & Kirchner 2024, section 5: dropout promotes
redundant codes). All randomness (init, split, batches, dropout masks) comes from generators seeded
by `seed`; no global RNG is touched.

Models are cached under `<cache root>/zoo/` (--cache-dir, else $POLYAUDIT_CACHE, else
~/.cache/polyaudit) as safetensors
plus a JSON sidecar (params, test accuracy, sha256 of the file). Files are written atomically
(temp file + os.replace) under a file lock, so concurrent processes leave one valid entry; an entry
whose checksum does not match is retrained. To add a model, register a `ZooEntry`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from polyaudit.cache_limit import touch
from polyaudit.errors import PolyauditError
from polyaudit.paths import cache_root

RECIPE_VERSION = 1  # bump when a recipe changes: old cache entries are then ignored
TRAIN_CALLS: dict[str, int] = {}  # name -> trainings done by this process (tests check cache hits)
Param = tuple[type, Any, Callable[[Any], bool], str]  # type, default, check, what the check means


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


def zoo_adapter(entry: ZooEntry, net: nn.Module, params: Mapping[str, Any]) -> Any:
    """The adapter of a zoo model: the entry's own, else the nn.Sequential adapter."""
    if entry.adapter is not None:
        return entry.adapter(net, dict(params))
    from polyaudit.models.sequential import SequentialAdapter

    return SequentialAdapter(net)


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


def _build_mlp(p: dict[str, Any], g: torch.Generator) -> nn.Module:
    layers: list[nn.Module] = []
    d_in = 64
    for _ in range(p["depth"]):  # built on "meta": torch's own init would draw from the global RNG
        layers += [nn.Linear(d_in, p["width"], device="meta"), nn.ReLU()]
        if p["dropout"] > 0:
            layers.append(nn.Dropout(p["dropout"]))
        d_in = p["width"]
    layers.append(nn.Linear(d_in, 10, device="meta"))
    net = nn.Sequential(*layers).to_empty(device="cpu")
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):  # torch's default init, from our generator
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=g)
                bound = 1.0 / math.sqrt(m.in_features)
                nn.init.uniform_(m.bias, -bound, bound, generator=g)
    return net


def _forward_train(net: nn.Module, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Training forward with dropout masks drawn from `g` (nn.Dropout would use the global RNG)."""
    for m in net:  # type: ignore[attr-defined]
        if isinstance(m, nn.Dropout):
            keep = torch.rand(x.shape, generator=g) >= m.p
            x = x * keep / (1.0 - m.p)
        else:
            x = m(x)
    return x


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Train on one thread: faster for these sizes (no oversubscription on busy machines) and the
    same floating-point reductions whatever the core count. The setting is restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train_mlp(net: nn.Module, p: dict[str, Any], progress: bool) -> dict[str, Any]:
    with _one_thread():
        return _train_mlp_loop(net, p, progress)


def _train_mlp_loop(net: nn.Module, p: dict[str, Any], progress: bool) -> dict[str, Any]:
    g = torch.Generator().manual_seed(p["seed"] + 1)
    x_tr, y_tr, x_te, y_te = digits_split(p["seed"])
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    epochs, batch = 40, 64
    from polyaudit.progress import progress_bar

    with progress_bar("training zoo:mlp-digits", total=epochs, enabled=progress) as advance:
        for _epoch in range(epochs):
            order = torch.randperm(len(y_tr), generator=g)
            for i in range(0, len(order), batch):
                idx = order[i : i + batch]
                loss = nn.functional.cross_entropy(_forward_train(net, x_tr[idx], g), y_tr[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            advance(1)
    net.eval()
    with torch.no_grad():
        acc = (net(x_te).argmax(-1) == y_te).float().mean().item()
    return {
        "test_accuracy": round(acc, 6),
        "n_train": len(y_tr),
        "n_test": len(y_te),
        "epochs": epochs,
    }


REGISTRY: dict[str, ZooEntry] = {
    "mlp-digits": ZooEntry(
        name="mlp-digits",
        params={
            "dropout": (float, 0.0, lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
            "seed": (int, 0, lambda v: v >= 0, ">= 0"),
            "width": (int, 128, lambda v: 1 <= v <= 4096, "in 1..4096"),
            "depth": (int, 4, lambda v: 1 <= v <= 16, "in 1..16"),
        },
        build=_build_mlp,
        train=_train_mlp,
        default_probe="digits",
        doc="ReLU MLP on scikit-learn's 8x8 digits",
    ),
}


# --- spec -> model ---------------------------------------------------------------------------
def resolve(name: str, raw: Mapping[str, str]) -> tuple[ZooEntry, dict[str, Any]]:
    """The zoo entry and its full, typed parameters (defaults filled in)."""
    if name not in REGISTRY:
        raise PolyauditError(
            f"unknown zoo model {name!r}: the zoo has {', '.join(REGISTRY)}"
        )
    entry = REGISTRY[name]
    valid = ", ".join(f"{k}={d}" for k, (_, d, _, _) in entry.params.items())
    params: dict[str, Any] = {k: d for k, (_, d, _, _) in entry.params.items()}
    for key, text in raw.items():
        if key not in entry.params:
            raise PolyauditError(
                f"unknown parameter {key!r} for zoo:{name}: valid parameters (defaults) are {valid}"
            )
        typ, _, check, rule = entry.params[key]
        try:
            value = typ(text)
        except ValueError:
            kind = {int: "an integer", float: "a number"}.get(typ, typ.__name__)
            raise PolyauditError(
                f"zoo:{name} parameter {key}={text!r} is not {kind}: valid parameters (defaults) are {valid}"
            ) from None
        if not check(value):
            raise PolyauditError(f"zoo:{name} parameter {key}={text} must be {rule}")
        params[key] = value
    return entry, params


def cache_stem(name: str, params: Mapping[str, Any]) -> str:
    view = REGISTRY[name].view_params if name in REGISTRY else ()
    return f"{name}-v{RECIPE_VERSION}-" + "-".join(f"{k}{params[k]}" for k in sorted(params) if k not in view)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _write_text(path: str, text: str) -> None:
    Path(path).write_text(text)


def _read_cached(
    weights: Path, sidecar: Path
) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The cached state dict and sidecar, or None when missing or failing its checksum."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not (weights.is_file() and sidecar.is_file()):
        return None
    try:
        meta = json.loads(sidecar.read_text())
        if meta.get("sha256") != _file_sha256(weights):
            return None
        state = load_file(str(weights))
    except (OSError, ValueError, SafetensorError):
        return None
    for path in (weights, sidecar):
        touch(path)  # last used now, for the cache size cap (least recently used first)
    return state, meta


def load_zoo(
    name: str,
    raw_params: Mapping[str, str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """Build zoo model `name`, training it on first use: (model in eval mode, info).

    `cache_dir` is polyaudit's cache root (see `cache_root`); the model is cached in its `zoo/`.
    info: params, metrics (test accuracy), default_probe, cache path and whether it was a cache hit.
    """
    from filelock import FileLock
    from safetensors.torch import save_file

    entry, params = resolve(name, raw_params)
    folder = cache_root(cache_dir) / "zoo"
    folder.mkdir(parents=True, exist_ok=True)
    stem = cache_stem(name, params)
    weights, sidecar = folder / f"{stem}.safetensors", folder / f"{stem}.json"
    model = entry.build(params, torch.Generator().manual_seed(params["seed"]))
    with FileLock(str(folder / f"{stem}.lock")):
        cached = _read_cached(weights, sidecar)
        if cached is None:
            TRAIN_CALLS[name] = TRAIN_CALLS.get(name, 0) + 1
            metrics = entry.train(model, params, progress)
            state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
            _atomic_write(weights, lambda tmp: save_file(state, tmp, metadata={"zoo": name}))
            meta = {
                "name": name,
                "params": params,
                "recipe_version": RECIPE_VERSION,
                "metrics": metrics,
                "sha256": _file_sha256(weights),
            }
            _atomic_write(sidecar, lambda tmp: _write_text(tmp, json.dumps(meta, indent=2)))
            hit = False
        else:
            state, meta = cached
            model.load_state_dict(state)
            hit = True
    model.eval()
    model.requires_grad_(False)
    info = {
        "params": params,
        "metrics": meta.get("metrics", {}),
        "default_probe": entry.default_probe,
        "cache": str(weights),
        "cache_hit": hit,
        "recipe_version": RECIPE_VERSION,
    }
    return model, info


# Recipes in their own modules register themselves into REGISTRY when imported (last, so the
# names they import from here exist even when they are imported first).
import polyaudit.models.zoo_conv  # noqa: E402, I001  (conv-ae-digits, registered before cnn-digits)
import polyaudit.models.zoo_cnn  # noqa: E402, F401  (cnn-digits)
