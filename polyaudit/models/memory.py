"""Memory checks before the expensive steps: a model or a capture that cannot fit is refused with
the numbers in one line, instead of being killed by the out-of-memory killer halfway through.

Two estimates, both deliberately simple and on the generous side of "fits":
- loading a checkpoint: its parameter count (read from the safetensors headers, no tensor is read)
  times the bytes of the dtype it will be loaded in;
- capturing: every requested site keeps `n_samples x width` float32 values on the host, twice (the
  capture buffer and the float16-rounded copy the claims read), and one forward batch needs a few
  activations of its widest site plus the attention scores on the model's device.

Free memory comes from `available_bytes(device)`: CUDA from `torch.cuda.mem_get_info`, the host from
psutil when it is installed, else /proc/meminfo's MemAvailable, else sysconf, and never more than a
cgroup (container) limit leaves. Unknown (another device kind): nothing is refused.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polyaudit.errors import PolyauditError

GIB = 2.0**30
_SAFETENSORS_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                      "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def gib(n: float) -> str:
    """A byte count in the unit that shows it: 12.3 GiB, 45.6 MiB, 7.8 KiB."""
    for unit, size in (("GiB", GIB), ("MiB", 2.0**20)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n / 1024:.1f} KiB"


def _count(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.2f} M"


def _meminfo_available() -> int | None:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def _cgroup_headroom() -> int | None:
    """What a cgroup v2 memory limit still allows (None without one)."""
    root = Path("/sys/fs/cgroup")
    try:
        limit = (root / "memory.max").read_text().strip()
        used = (root / "memory.current").read_text().strip()
    except OSError:
        return None
    if not limit.isdigit() or not used.isdigit():
        return None  # "max": no limit
    return max(int(limit) - int(used), 0)


def host_available_bytes() -> int | None:
    """Memory the host can still give this process (bytes), or None when it cannot be told."""
    found: int | None
    try:
        import psutil
    except ImportError:
        found = _meminfo_available()
        if found is None and hasattr(os, "sysconf"):
            try:
                found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            except (ValueError, OSError):
                found = None
    else:
        found = int(psutil.virtual_memory().available)
    headroom = _cgroup_headroom()
    if found is None:
        return headroom
    return found if headroom is None else min(found, headroom)


def available_bytes(device: torch.device | str) -> int | None:
    """Free memory on `device` in bytes (None: unknown, so nothing is refused)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return None
        free, _total = torch.cuda.mem_get_info(dev)
        return int(free)
    if dev.type == "cpu":
        return host_available_bytes()
    return None


def _where(device: torch.device | str) -> str:
    dev = torch.device(device)
    return "the host (RAM)" if dev.type == "cpu" else f"device {dev}"


# --- loading ---------------------------------------------------------------------------------
def _safetensors_params(path: Path) -> tuple[int, int]:
    """(parameters, bytes as stored) from a safetensors header, reading no tensor data."""
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) != 8:
            return 0, 0
        (n,) = struct.unpack("<Q", head)
        if n > 100 * 2**20:
            return 0, 0  # not a plausible header: the loader reports the corrupt file
        try:
            header = json.loads(f.read(n))
        except (ValueError, UnicodeDecodeError):
            return 0, 0
    params = stored = 0
    for name, info in header.items() if isinstance(header, dict) else ():
        if name == "__metadata__" or not isinstance(info, dict):
            continue
        count = 1
        for dim in info.get("shape", []):
            count *= int(dim)
        params += count
        stored += count * _SAFETENSORS_BYTES.get(str(info.get("dtype")), 4)
    return params, stored


def checkpoint_bytes(folder: str | os.PathLike[str], dtype: torch.dtype | None) -> tuple[int, int] | None:
    """(parameters, bytes once loaded in `dtype`; None dtype: as stored) of the weights in a
    checkpoint folder; None when the folder holds no weights this can size."""
    root = Path(folder)
    files = sorted(root.glob("*.safetensors"))
    if files:
        params = stored = 0
        for f in files:
            p, s = _safetensors_params(f)
            params, stored = params + p, stored + s
        if params == 0:
            return None
        per = torch.empty((), dtype=dtype).element_size() if dtype is not None else None
        return params, (params * per if per is not None else stored)
    pickled = sorted(root.glob("pytorch_model*.bin"))
    if pickled:  # sizes only: the file is not opened here (it is never unpickled at all)
        stored = sum(f.stat().st_size for f in pickled)
        return stored // 4, stored
    return None


def check_load_fits(target: str, folder: str | os.PathLike[str], dtype: torch.dtype | None,
                    device: str) -> None:
    """Refuse (one line, with the numbers) a checkpoint whose weights cannot fit the device."""
    size = checkpoint_bytes(folder, dtype)
    if size is None:
        return
    params, need = size
    dev = "cuda" if device == "cuda" else "cpu"
    free = available_bytes(dev)
    if free is None or need <= free:
        return
    in_dtype = f"in {str(dtype).replace('torch.', '')}" if dtype is not None else "as stored"
    raise PolyauditError(
        f"loading {target!r} needs about {gib(need)} for {_count(params)} parameters {in_dtype}, "
        f"but only {gib(free)} is free on {_where(dev)}: use --dtype bfloat16 (or float16), "
        "--device cuda / auto, or a machine with more memory"
    )


# --- capturing -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CaptureEstimate:
    n_samples: int
    values: int  # sum of the site widths
    host: int  # bytes kept on the host: capture buffer + the rounded copy, float32 each
    forward: int  # bytes one forward batch needs on the model's device
    weights: int  # bytes of the model's parameters (already placed)


def _linear_width(module: nn.Module) -> int | None:
    if isinstance(module, nn.Linear):
        return int(module.out_features)
    nf = getattr(module, "nf", None)  # transformers' Conv1D (GPT-2)
    if isinstance(nf, int):
        return nf
    return None


def site_width(model: nn.Module, module_path: str) -> int | None:
    """Width of the tensor at a module: its own output width when it is linear, else that of the
    last linear layer inside it, else that of the last linear layer before it; None when unknown."""
    last: int | None = None
    inside = False
    for name, mod in model.named_modules():
        if name == module_path:
            inside = True
        elif inside and not name.startswith(module_path + "."):
            break
        width = _linear_width(mod)
        if width is not None:
            last = width
    return last if inside else None


def _heads(model: nn.Module) -> int:
    config = getattr(model, "config", None)
    for attr in ("num_attention_heads", "n_head", "num_heads"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return 0


def estimate_capture(model: nn.Module, sites: Iterable[Any], n_samples: int, batch_rows: int,
                     seq_len: int, batch: int) -> CaptureEstimate | None:
    """The memory a capture of `sites` (objects with `.module`) over `n_samples` kept samples
    needs; `batch_rows` rows (tokens or inputs) per forward batch of `batch` sequences of
    `seq_len`. None when a site's width cannot be told."""
    widths = []
    for site in sites:
        w = site_width(model, site.module)
        if w is None:
            return None
        widths.append(w)
    if not widths:
        return None
    params = list(model.parameters())
    elem = next((p.element_size() for p in params if p.is_floating_point()), 4)
    weights = sum(p.numel() * p.element_size() for p in params)
    values = sum(widths)
    host = 2 * 4 * n_samples * values
    forward = 4 * batch_rows * max(widths) * elem + 2 * batch * _heads(model) * seq_len * seq_len * elem
    return CaptureEstimate(n_samples, values, host, forward, weights)


def check_capture_fits(label: str, est: CaptureEstimate | None, device: torch.device) -> None:
    """Refuse (one line, with the numbers) a capture that cannot fit the host or the device."""
    if est is None:
        return
    on_host = device.type == "cpu"
    need_host = est.host + (est.forward if on_host else 0)
    checks = [("cpu", need_host)] + ([] if on_host else [(str(device), est.forward)])
    for where, need in checks:
        free = available_bytes(where)
        if free is None or need <= free:
            continue
        parts = f"activations {gib(est.host)} for {est.n_samples} samples x {est.values} values"
        if where != "cpu" or on_host:
            parts += f", forward {gib(est.forward)}"
        raise PolyauditError(
            f"capturing {label} needs about {gib(need)} ({parts}) but only {gib(free)} is free on "
            f"{_where(where)} (the weights already take {gib(est.weights)}): use --profile quick, fewer "
            "claims (-k), or a machine with more memory"
        )


def check_subject_capture(subject: Any, probe: str | None, kinds: Iterable[str]) -> None:
    """The capture check for one model under audit (a runtime Subject) and one of its probes."""
    adapter = subject.adapter
    kinds = [k for k in dict.fromkeys(kinds) if k in adapter.site_kinds]
    if not kinds:
        return
    ps = subject.probe(probe)
    batch = int(subject.options.profile.batch_size)
    seq_len = int(ps.inputs.shape[1]) if ps.positions is not None and ps.inputs.dim() > 1 else 1
    sites = [s for k in kinds for s in adapter.sites(k)]
    est = estimate_capture(subject.loaded.model, sites, int(ps.n_samples), batch * seq_len, seq_len, batch)
    check_capture_fits(f"{len(sites)} sites of {subject.id} on probe {ps.name}", est, adapter.device)
