"""Control twins: the same architecture without what training put into the weights.

Every claim row is also measured on a twin of the model, so the report can say whether an effect is
learned (the model shows it and exceeds its twin), architectural (the twin shows it too) or absent.

- `init`: the same architecture, untrained, from the same config or recipe, with a seed derived
  from --seed and the model's weights (their sha256, not where they are: the same checkpoint in
  another folder gets the same twin; the members of a dropout family get different
  initialisations, as trained members have different seeds): Hugging Face models through `from_config` (same dtype), zoo models as their untrained
  recipe, a factory's own control when it returns one (`{"model": ..., "control": ...}`), any other
  module by re-running every submodule's `reset_parameters` (parameters no submodule re-initialises
  are permuted instead, and the notes say which).
- `shuffle`: the trained weights with each floating tensor's entries permuted, parameters and
  buffers (batch norm's running statistics) alike: same values, no learned structure.

The twin lives in the model itself: `Twin.active()` swaps its weights in place and back, so the
model's adapter, hooks and clock serve both, and never are both resident on the device. The trained
weights are stashed on the host (or on disk when the host could not hold them twice), the twin's
are built once, deterministically, and kept the same way. Global random state is never touched
(`torch.random.fork_rng`).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polyaudit.errors import PolyauditError
from polyaudit.models.base import LoadedModel
from polyaudit.models.hashing import model_sha256
from polyaudit.models.memory import host_available_bytes

KINDS = ("init", "shuffle")


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A host copy of the model's state (tied tensors copied once, shared in the copy)."""
    seen: dict[tuple[int, int], torch.Tensor] = {}
    out: dict[str, torch.Tensor] = {}
    for name, t in model.state_dict(keep_vars=False).items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset()) if t.device.type != "meta" else (id(t), 0)
        if key not in seen:
            seen[key] = t.detach().to("cpu", copy=True)
        out[name] = seen[key]
    return out


def _bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters()) + sum(
        b.numel() * b.element_size() for b in model.buffers())


def _permute_(p: torch.Tensor, g: torch.Generator) -> None:
    flat = p.data.reshape(-1)
    order = torch.randperm(flat.numel(), generator=g).to(flat.device)
    p.data.copy_(flat[order].reshape(p.shape))


def _generator(seed: int, *keys: object) -> torch.Generator:
    h = hashlib.sha256("\x1f".join(map(str, (seed, *keys))).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(h[:8], "little") >> 1)


def shuffle_(model: nn.Module, seed: int, key: str = "") -> list[str]:
    """Permute every floating tensor's entries in place (parameters and buffers such as batch norm's
    running statistics, which training also set), seeded by --seed, the model and the tensor's name."""
    names = []
    for name, p in [*model.named_parameters(), *model.named_buffers()]:
        if p.is_floating_point() and p.numel() > 1:
            _permute_(p, _generator(seed, "shuffle", key, name))
            names.append(name)
    return names


def _reset_(model: nn.Module, seed: int, key: str = "") -> list[str]:
    """Re-run every submodule's `reset_parameters` (seeded); permute the parameters none of them
    re-initialises. Returns the names of the permuted ones."""
    covered: set[int] = set()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(_generator(seed, "init", key).initial_seed()))
        for m in model.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()
                covered.update(id(p) for p in m.parameters(recurse=False))
    permuted = []
    for name, p in model.named_parameters():
        if id(p) not in covered and p.is_floating_point():
            _permute_(p, _generator(seed, "init", key, name))
            permuted.append(name)
    return permuted


def _untrained_state(loaded: LoadedModel, seed: int, key: str) -> tuple[dict[str, torch.Tensor] | None, str]:
    """The untrained weights of a model whose recipe can be re-run off the model (factory control,
    zoo recipe, Hugging Face config), seeded by `seed` and `key` (the trained weights' hash), with
    how they were made; (None, why) when it cannot."""
    model = loaded.model
    meta = loaded.meta or {}
    if isinstance(meta.get("control"), nn.Module):
        return dict(meta["control"].state_dict()), "the factory's own control"
    if meta.get("kind") == "zoo":
        from polyaudit.models.spec import parse_spec
        from polyaudit.models.zoo import resolve

        parsed = parse_spec(loaded.spec)
        entry, params = resolve(parsed.target, parsed.params)
        net = entry.build(params, _generator(seed, "init", key))
        return dict(net.state_dict()), f"zoo:{parsed.target} recipe, untrained"
    config = getattr(model, "config", None)
    if config is not None and hasattr(type(model), "_from_config"):
        need = _bytes(model)
        free = host_available_bytes()
        if free is not None and need > free:
            raise PolyauditError(
                f"building the untrained twin of {loaded.spec} needs about {need / 2**30:.1f} GiB on the host, "
                f"{free / 2**30:.1f} GiB are free: use --control=shuffle (built in place) or --control=none")
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(_generator(seed, "init", key).initial_seed()))
            build: Any = type(model)  # a transformers PreTrainedModel class
            fresh = build._from_config(copy.deepcopy(config)).to(dtype)  # (a copy: it edits the config)
        state = dict(fresh.state_dict())
        del fresh
        return state, "from_config, untrained"
    return None, ""


class Twin:
    """The control twin of one loaded model (see the module docstring)."""

    def __init__(self, loaded: LoadedModel, kind: str, seed: int, spill_dir: Path | None = None) -> None:
        if kind not in KINDS:
            raise PolyauditError(f"unknown control {kind!r}: use init, shuffle or none")
        self.loaded = loaded
        self.kind = kind
        self.seed = seed
        self.key = loaded.sha256 or loaded.spec  # what seeds the twin: the weights, not their folder
        self.spill_dir = spill_dir
        self.how = ""
        self.sha256 = ""
        self._twin: Any = None  # state dict on the host, or a safetensors path
        self._active = False

    @property
    def model(self) -> nn.Module:
        return self.loaded.model

    def _on_disk(self) -> bool:
        free = host_available_bytes()
        return self.spill_dir is not None and free is not None and 3 * _bytes(self.model) > free

    def _save(self, tag: str) -> Any:
        if not self._on_disk():
            return _state(self.model)
        from safetensors.torch import save_model

        assert self.spill_dir is not None
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        path = self.spill_dir / f"{self.loaded.sha256[:24]}-{self.kind}-{self.seed}-{tag}.safetensors"
        save_model(self.model, str(path))
        return path

    def _load(self, saved: Any) -> None:
        if isinstance(saved, Path):
            from safetensors.torch import load_model

            load_model(self.model, str(saved), strict=True)
            return
        with torch.no_grad():
            self.model.load_state_dict(saved, strict=True)

    def _build(self) -> None:
        """Make the twin's weights in the model (after the trained ones are stashed), keep them."""
        if self.kind == "shuffle":
            shuffle_(self.model, self.seed, self.key)
            self.how = "every weight tensor's entries permuted (seeded)"
        else:
            state, how = _untrained_state(self.loaded, self.seed, self.key)
            if state is not None:
                self._load(state)
                self.how = how
            else:
                permuted = _reset_(self.model, self.seed, self.key)
                self.how = "reset_parameters of every submodule, untrained" + (
                    f"; {len(permuted)} parameter(s) no submodule re-initialises permuted instead "
                    f"({', '.join(permuted[:3])}{', ...' if len(permuted) > 3 else ''})" if permuted else "")
        self._twin = self._save("twin")
        self.sha256 = hashlib.sha256(
            f"{self.loaded.sha256}|{self.kind}|{self.seed}|{model_sha256(self.model)}".encode()).hexdigest()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """The model's weights are the twin's for the duration, the trained ones after."""
        if self._active:
            yield
            return
        trained = self._save("trained")
        self._active = True
        try:
            with torch.no_grad():
                if self._twin is None:
                    self._build()
                else:
                    self._load(self._twin)
            yield
        finally:
            self._load(trained)
            self._active = False

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "seed": self.seed, "how": self.how, "sha256": self.sha256}
