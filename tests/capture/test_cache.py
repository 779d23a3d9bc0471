"""Activation cache: float16 with a per-entry scale, checksummed atomic entries, recompute on damage."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from polyaudit.capture import Capture
from polyaudit.errors import PolyauditCacheWarning
from polyaudit.models.base import Adapter, LoadedModel, Site, SiteKind
from polyaudit.probes.base import ProbeSet
from polyaudit.store.activations import (
    MAGIC,
    ActivationCache,
    decode,
    default_root,
    encode,
    entry_key,
    float16_scale,
)

KEY = entry_key("model", "probe", "blocks.0.resid")
F16_REL = 2.0**-11  # float16 rounding: half a unit in the last place of an 11-bit significand


class _MLP(Adapter):
    family = "toy-mlp"
    input_kind = "vectors"
    n_layers = 2
    site_kinds = ("mlp_pre",)

    def _site(self, kind: SiteKind, layer: int) -> Site:
        return Site(layer, kind, str(2 * layer))

    def _call(self, inputs: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        return self.model(inputs)  # type: ignore[no-any-return]


def _capture(root: Path, gain: float = 1.0) -> Capture:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 24), nn.ReLU(), nn.Linear(24, 24), nn.ReLU()).eval()
    with torch.no_grad():
        model[0].weight.mul_(gain)
    rng = np.random.default_rng(0)
    probe = ProbeSet(
        name="vec",
        kind="vectors",
        inputs=torch.from_numpy(rng.normal(size=(40, 6)).astype(np.float32)),
        labels=rng.integers(0, 3, 40),
    )
    loaded = LoadedModel(spec="toy", model=model, adapter=_MLP(model), sha256=f"toy-{gain}")
    cap = Capture(loaded, probe, cache=ActivationCache(root), batch_size=16)
    cap.request(["mlp_pre"])
    return cap


def _max_err(x: np.ndarray, y: np.ndarray) -> float:
    """Largest error in units of float16 rounding, allowing the subnormal floor far below the peak."""
    peak = float(np.abs(x[np.isfinite(x)]).max(initial=0.0))
    return float(
        np.max(np.abs(y - x) / (F16_REL * np.abs(x) + 2.0**-38 * peak + 1e-300), initial=0.0)
    )


# --- format ----------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    st.integers(-12, 12),
    st.integers(1, 30),
    st.integers(1, 20),
    st.integers(0, 2**32 - 1),
    st.booleans(),
)
def test_round_trip_any_magnitude(exp10: int, n: int, d: int, seed: int, with_labels: bool) -> None:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, d)) * 10.0**exp10).astype(np.float32)
    groups = rng.integers(0, 5, n)
    labels = rng.integers(0, 3, n) if with_labels else None
    out = decode(KEY, encode(KEY, x, groups, labels))
    assert out.samples.dtype == np.float32 and out.samples.shape == (n, d)
    assert np.isfinite(out.samples).all() and _max_err(x, out.samples) <= 1.0
    assert np.array_equal(out.groups, groups)
    assert (out.labels is None) == (labels is None) and (
        labels is None or np.array_equal(out.labels, labels)
    )


def test_values_near_1e6_survive() -> None:
    x = np.array(
        [[1.0e6, -1.0e6, 999_999.0, 3.0e6], [1.234e6, -65504.0 * 20, 0.5e6, 7.77e5]],
        dtype=np.float32,
    )
    out = decode(KEY, encode(KEY, x, np.arange(2), None)).samples
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, x, rtol=F16_REL)
    assert np.max(np.abs(x)) / float16_scale(x) <= 2**15  # the scaled peak sits well inside float16


def test_nonfinite_and_empty() -> None:
    x = np.array([[np.nan, np.inf, -np.inf, 2.5e7]], dtype=np.float32)
    out = decode(KEY, encode(KEY, x, np.zeros(1), None)).samples
    assert np.isnan(out[0, 0]) and out[0, 1] == np.inf and out[0, 2] == -np.inf
    np.testing.assert_allclose(out[0, 3], 2.5e7, rtol=F16_REL)
    z = decode(KEY, encode(KEY, np.zeros((3, 4), np.float32), np.zeros(3), None)).samples
    assert np.array_equal(z, np.zeros((3, 4)))
    e = decode(KEY, encode(KEY, np.zeros((0, 4), np.float32), np.zeros(0), None)).samples
    assert e.shape == (0, 4)


def test_compact() -> None:
    n, d = 200, 64
    blob = encode(KEY, np.ones((n, d), np.float32), np.zeros(n), np.zeros(n))
    assert blob.startswith(MAGIC)
    assert len(blob) < n * d * 2 + n * 16 + 400  # float16 samples, two int64 columns, a header


# --- damaged entries -------------------------------------------------------------------------
def _stored(tmp_path: Path) -> tuple[ActivationCache, Path]:
    cache = ActivationCache(tmp_path)
    cache.store(KEY, np.arange(60, dtype=np.float32).reshape(10, 6), np.arange(10), None)
    assert cache.load(KEY).entry is not None
    return cache, cache.path(KEY)


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:-7])


def _flip_payload(p: Path) -> None:
    b = bytearray(p.read_bytes())
    b[-30] ^= 0x04
    p.write_bytes(bytes(b))


def _flip_header(p: Path) -> None:
    b = bytearray(p.read_bytes())
    b[b.index(b'"scale"') + 10] ^= 0x01
    p.write_bytes(bytes(b))


def _garbage(p: Path) -> None:
    p.write_bytes(b"PK\x03\x04 this is a zip, not an entry")


@pytest.mark.parametrize(
    "damage",
    [_truncate, _flip_payload, _flip_header, _garbage],
    ids=["truncated", "bit-flip-payload", "bit-flip-header", "foreign-file"],
)
def test_damaged_entry_detected(tmp_path: Path, damage: object) -> None:
    cache, p = _stored(tmp_path)
    damage(p)  # type: ignore[operator]
    with pytest.warns(PolyauditCacheWarning, match="corrupt activation cache entry") as rec:
        found = cache.load(KEY)
    assert found.entry is None and found.corrupt and not p.exists()
    assert len(rec) == 1 and "\n" not in str(rec[0].message)
    assert cache.load(KEY).corrupt is False  # removed: now a plain miss


def test_entry_of_another_key(tmp_path: Path) -> None:
    cache, p = _stored(tmp_path)
    other = entry_key("model", "probe", "blocks.1.resid")
    cache.path(other).parent.mkdir(parents=True, exist_ok=True)
    p.rename(cache.path(other))
    with pytest.warns(PolyauditCacheWarning, match="another key"):
        assert cache.load(other).corrupt


@pytest.mark.parametrize("damage", [_truncate, _flip_payload], ids=["truncated", "bit-flipped"])
def test_capture_recomputes_damaged_entry(tmp_path: Path, damage: object) -> None:
    first = _capture(tmp_path)
    want = [d.samples for d in first.get_kind("mlp_pre")]
    files = sorted(tmp_path.rglob("*.pact"))
    assert len(files) == 2
    damage(files[0])  # type: ignore[operator]
    second = _capture(tmp_path)
    with pytest.warns(PolyauditCacheWarning) as rec:
        got = [d.samples for d in second.get_kind("mlp_pre")]
    assert len(rec) == 1
    assert (
        second.stats.recomputed == 1
        and second.stats.cache_hits == 1
        and second.stats.n_forward_passes == 1
    )
    for a, b in zip(want, got, strict=True):
        assert _max_err(a, b) <= 1.0
    third = _capture(tmp_path)  # the recomputed entry was written back
    third.get_kind("mlp_pre")
    assert third.stats.cache_hits == 2 and third.stats.n_forward_passes == 0


def test_capture_large_activations_round_trip(tmp_path: Path) -> None:
    first = _capture(tmp_path, gain=1e6)
    a = first.get_kind("mlp_pre")
    assert np.abs(a[0].samples).max() > 1e6
    b = _capture(tmp_path, gain=1e6).get_kind("mlp_pre")
    for x, y in zip(a, b, strict=True):
        assert np.isfinite(y.samples).all() and _max_err(x.samples, y.samples) <= 1.0


# --- writers ---------------------------------------------------------------------------------
def test_concurrent_writers(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(300, 50)).astype(np.float32)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for _ in range(5):
                ActivationCache(tmp_path).store(KEY, x, np.arange(300), None)
        except BaseException as e:  # collected and re-raised in the main thread
            errors.append(e)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    entry = ActivationCache(tmp_path).load(KEY).entry
    assert entry is not None and _max_err(x, entry.samples) <= 1.0
    assert not list(tmp_path.rglob("*.tmp"))  # no temp files left behind


def test_unwritable_cache_warns_once(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cache = ActivationCache(blocker / "activations")
    with pytest.warns(PolyauditCacheWarning, match="cannot write the activation cache") as rec:
        cache.store(KEY, np.zeros((2, 2), np.float32), np.zeros(2), None)
        cache.store(KEY, np.zeros((2, 2), np.float32), np.zeros(2), None)
    assert len(rec) == 1


def test_default_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("POLYAUDIT_CACHE", str(tmp_path))
    assert default_root() == tmp_path / "activations" == ActivationCache().root
    monkeypatch.delenv("POLYAUDIT_CACHE")
    assert default_root() == Path("~/.cache/polyaudit/activations").expanduser()


def test_key_depends_on_every_part() -> None:
    keys = {
        entry_key("m", "p", "s"),
        entry_key("m2", "p", "s"),
        entry_key("m", "p2", "s"),
        entry_key("m", "p", "s2"),
        entry_key("m", "p", "s", "torch.float16"),
    }
    assert len(keys) == 5
