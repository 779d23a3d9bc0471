"""Memory estimates before loading and capturing (polyaudit/memory.py), and the dtype-on-device check.
The refusals themselves are rows of tests/plugin/test_bad_input_matrix.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from polyaudit.errors import PolyauditError
from polyaudit.models.loader import check_dtype_supported, load_model
from polyaudit.models.memory import (
    _meminfo_available,
    available_bytes,
    check_capture_fits,
    check_load_fits,
    checkpoint_bytes,
    estimate_capture,
    gib,
    host_available_bytes,
    site_width,
)


def test_site_widths_follow_the_architecture(tiny_models: dict[str, Path]) -> None:
    loaded = load_model(str(tiny_models["gpt2"]))
    config = json.loads((tiny_models["gpt2"] / "config.json").read_text())
    hidden = config["n_embd"]
    inner = config.get("n_inner") or 4 * hidden
    ad = loaded.adapter
    assert [site_width(loaded.model, s.module) for s in ad.sites("mlp_pre")] == [inner] * ad.n_layers
    assert [site_width(loaded.model, s.module) for s in ad.sites("resid")] == [hidden] * ad.n_layers
    assert site_width(loaded.model, "no.such.module") is None


def test_sequential_widths_come_from_the_linear_before_the_nonlinearity() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(4, 24), torch.nn.ReLU(), torch.nn.Linear(24, 7), torch.nn.ReLU())
    assert site_width(net, "1") == 24 and site_width(net, "3") == 7


def test_capture_estimate_counts_every_site() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(4, 24), torch.nn.ReLU(), torch.nn.Linear(24, 8), torch.nn.ReLU())

    class S:
        def __init__(self, module: str) -> None:
            self.module = module

    est = estimate_capture(net, [S("1"), S("3")], n_samples=1000, batch_rows=10, seq_len=1, batch=10)
    assert est is not None
    assert est.values == 32 and est.host == 2 * 4 * 1000 * 32
    assert est.weights == sum(p.numel() * 4 for p in net.parameters())
    check_capture_fits("toy", est, torch.device("cpu"))  # a few hundred kB always fits


def test_checkpoint_size_from_the_safetensors_header(tiny_models: dict[str, Path]) -> None:
    from safetensors.torch import load_file

    state = load_file(str(tiny_models["gpt2"] / "model.safetensors"))
    params = sum(t.numel() for t in state.values())
    stored = sum(t.numel() * t.element_size() for t in state.values())
    assert checkpoint_bytes(tiny_models["gpt2"], None) == (params, stored)
    assert checkpoint_bytes(tiny_models["gpt2"], torch.bfloat16) == (params, 2 * params)
    assert checkpoint_bytes(tiny_models["gpt2"] / "nowhere", None) is None


def test_load_check_refuses_with_the_numbers(tiny_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import polyaudit.models.memory

    check_load_fits("tiny", tiny_models["gpt2"], None, "cpu")  # fits this machine
    monkeypatch.setattr(polyaudit.models.memory, "available_bytes", lambda device: 1024)
    with pytest.raises(PolyauditError) as info:
        check_load_fits("tiny", tiny_models["gpt2"], torch.float16, "cpu")
    msg = str(info.value)
    assert "\n" not in msg and "in float16" in msg and "only 1.0 KiB is free on the host" in msg


def test_free_memory_is_known_on_this_host() -> None:
    free = host_available_bytes()
    assert free is not None and free > 0
    cpu = available_bytes("cpu")
    assert cpu is not None and cpu > 0
    assert available_bytes("meta") is None
    meminfo = _meminfo_available()
    assert meminfo is None or meminfo > 0


def test_sizes_read_in_their_unit() -> None:
    assert gib(3 * 2**30) == "3.0 GiB" and gib(5 * 2**20) == "5.0 MiB" and gib(2048) == "2.0 KiB"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_every_dtype_runs_on_this_cpu(dtype: torch.dtype) -> None:
    """torch 2.13 has half and bfloat16 kernels on the CPU: nothing is refused here."""
    check_dtype_supported(dtype, torch.device("cpu"))


def test_a_missing_kernel_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.nn.functional as F

    def gelu(x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        raise RuntimeError("\"GeluKernelImpl\" not implemented for 'BFloat16'\nmore detail")

    monkeypatch.setattr(F, "gelu", gelu)
    with pytest.raises(PolyauditError) as info:
        check_dtype_supported(torch.bfloat16, torch.device("cpu"))
    msg = str(info.value)
    assert "\n" not in msg and "dtype bfloat16 is not supported on cpu" in msg and "gelu" in msg
    assert "--dtype float32" in msg
