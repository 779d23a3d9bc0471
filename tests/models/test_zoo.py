"""The built-in zoo: deterministic from the seed, accurate, cached (checksummed, shared safely)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from polyaudit.errors import PolyauditError
from polyaudit.models import zoo
from polyaudit.models.base import LoadedModel
from polyaudit.models.check import check_adapter
from polyaudit.models.loader import load_model
from polyaudit.models.sequential import SequentialAdapter

SMALL = "zoo:mlp-digits?width=16&depth=2"


def _load(spec: str, cache: Path, monkeypatch: pytest.MonkeyPatch) -> LoadedModel:
    monkeypatch.setenv("POLYAUDIT_CACHE", str(cache))
    return load_model(spec)


def test_default_model_is_deterministic_accurate_and_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng_before = torch.random.get_rng_state()
    first = _load("zoo:mlp-digits", tmp_path / "a", monkeypatch)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # no global RNG touched
    assert first.meta is not None and first.meta["cache_hit"] is False
    assert first.meta["metrics"]["test_accuracy"] > 0.9
    assert first.default_probe == "digits" and first.revision == "zoo-recipe-v1"
    adapter = first.adapter
    assert isinstance(adapter, SequentialAdapter)
    assert (adapter.n_layers, adapter.activation, adapter.piecewise_linear) == (4, "relu", True)
    assert adapter.logits(torch.zeros(2, 64)).shape == (2, 10)
    assert check_adapter(adapter, torch.rand(4, 64, generator=torch.Generator().manual_seed(0))) == []

    # the defaults spelled out, cached under an explicit cache root (--cache-dir)
    second = load_model("zoo:mlp-digits?seed=0&dropout=0", cache_dir=str(tmp_path / "b"))
    assert second.meta is not None and second.meta["cache_hit"] is False
    assert Path(second.meta["cache"]).parent == tmp_path / "b" / "zoo"
    assert second.sha256 == first.sha256

    trained = zoo.TRAIN_CALLS.get("mlp-digits", 0)
    again = _load("zoo:mlp-digits", tmp_path / "a", monkeypatch)
    assert again.meta is not None and again.meta["cache_hit"] is True
    assert zoo.TRAIN_CALLS["mlp-digits"] == trained  # served from the cache, no training
    assert again.sha256 == first.sha256

    other = _load("zoo:mlp-digits?seed=1", tmp_path / "a", monkeypatch)
    assert other.sha256 != first.sha256


def test_dropout_layers(tmp_path: Path) -> None:
    net, info = zoo.load_zoo(
        "mlp-digits", {"dropout": "0.5", "width": "8", "depth": "3"}, cache_dir=tmp_path
    )
    assert sum(isinstance(m, torch.nn.Dropout) for m in net) == 3
    assert info["params"] == {"dropout": 0.5, "seed": 0, "width": 8, "depth": 3}
    assert SequentialAdapter(net).n_layers == 3 and not net.training


def test_corrupt_cache_entry_is_retrained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _load(SMALL, tmp_path, monkeypatch)
    weights = Path(first.meta["cache"])  # type: ignore[index]
    weights.write_bytes(weights.read_bytes()[:100])
    again = _load(SMALL, tmp_path, monkeypatch)
    assert again.meta is not None and again.meta["cache_hit"] is False
    assert again.sha256 == first.sha256
    sidecar = json.loads(weights.with_suffix(".json").read_text())
    assert sidecar["params"]["width"] == 16 and 0 <= sidecar["metrics"]["test_accuracy"] <= 1
    assert len(sidecar["sha256"]) == 64


def test_two_processes_leave_one_valid_entry(tmp_path: Path) -> None:
    code = (
        "from polyaudit.models.zoo import load_zoo; import sys; "
        "_, info = load_zoo('mlp-digits', {'width': '16', 'depth': '2', 'seed': '3'}, cache_dir=sys.argv[1]); "
        "print(info['cache_hit'])"
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(2)
    ]
    hits = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert all(p.returncode == 0 for p in procs)
    assert hits == ["False", "True"]  # one trained under the lock, the other read its result
    files = sorted(f.suffix for f in (tmp_path / "zoo").iterdir() if f.suffix != ".lock")
    assert files == [".json", ".safetensors"]
    _, info = zoo.load_zoo(
        "mlp-digits", {"width": "16", "depth": "2", "seed": "3"}, cache_dir=tmp_path
    )
    assert info["cache_hit"] is True


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("zoo:no-such-model", "the zoo has mlp-digits"),
        (
            "zoo:mlp-digits?colour=red",
            "valid parameters .* dropout=0.0, seed=0, width=128, depth=4",
        ),
        ("zoo:mlp-digits?width=wide", "is not an integer"),
        ("zoo:mlp-digits?dropout=1.5", r"must be in \[0, 1\)"),
        ("zoo:mlp-digits?depth=0", "must be in 1..16"),
    ],
)
def test_bad_zoo_requests(
    spec: str, match: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(PolyauditError, match=match) as info:
        _load(spec, tmp_path, monkeypatch)
    assert "\n" not in str(info.value)
    assert not any(tmp_path.glob("**/*.safetensors"))
