"""The built-in zoo: small models trained on first use, deterministic from the seed, cached.

    zoo:mlp-digits[?dropout=0.0&seed=0&width=128&depth=4]     (polyaudit.models.zoo.mlp)
    zoo:cnn-digits[?dropout=0.0&seed=0&width=24&pos=center]   (polyaudit.models.zoo.cnn)
    zoo:conv-ae-digits[?dropout=0.0&seed=0&width=8&latent=16] (polyaudit.models.zoo.conv_ae)

A recipe is one module with an `ENTRY` (`polyaudit.models.zoo.base.ZooEntry`: parameters, build,
train, default probe) listed in `RECIPES` below; `register` refuses a name that is taken. Models are
cached under `<cache root>/zoo/` (--cache-dir, else $POLYAUDIT_CACHE, else ~/.cache/polyaudit) as
safetensors plus a JSON sidecar (params, metrics, sha256 of the file), written atomically under a
file lock, so concurrent processes leave one valid entry; an entry whose checksum does not match is
retrained.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polyaudit.errors import PolyauditError
from polyaudit.models.zoo import cnn, conv_ae, mlp
from polyaudit.models.zoo.base import ZooEntry
from polyaudit.serial import atomic_write, atomic_write_text
from polyaudit.store.limit import touch
from polyaudit.store.root import cache_root

RECIPE_VERSION = 1  # bump when a recipe changes: old cache entries are then ignored
TRAIN_CALLS: dict[str, int] = {}  # name -> trainings done by this process (tests check cache hits)
REGISTRY: dict[str, ZooEntry] = {}


def register(entry: ZooEntry) -> ZooEntry:
    """Add a recipe to the zoo; a name that is taken is refused (with the names the zoo has)."""
    if entry.name in REGISTRY:
        raise PolyauditError(f"zoo recipe {entry.name!r} is registered twice: the zoo has {', '.join(REGISTRY)}")
    REGISTRY[entry.name] = entry
    return entry


RECIPES = (mlp.ENTRY, conv_ae.ENTRY, cnn.ENTRY)
for _entry in RECIPES:
    register(_entry)


def zoo_adapter(entry: ZooEntry, net: nn.Module, params: Mapping[str, Any]) -> Any:
    """The adapter of a zoo model: the entry's own, else the nn.Sequential adapter."""
    if entry.adapter is not None:
        return entry.adapter(net, dict(params))
    from polyaudit.models.sequential import SequentialAdapter

    return SequentialAdapter(net)


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
            atomic_write(weights, lambda tmp: save_file(state, tmp, metadata={"zoo": name}))
            meta = {
                "name": name,
                "params": params,
                "recipe_version": RECIPE_VERSION,
                "metrics": metrics,
                "sha256": _file_sha256(weights),
            }
            atomic_write_text(sidecar, json.dumps(meta, indent=2))
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
