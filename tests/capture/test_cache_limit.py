"""The cache size cap (least-recently-used eviction), `polyaudit cache prune`, and processes racing
to write the same entry (what pytest-xdist workers do)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from polyaudit.cli import EXIT_OK, EXIT_REFUSED, main
from polyaudit.errors import PolyauditCacheWarning, PolyauditError
from polyaudit.store.activations import ActivationCache, entry_key
from polyaudit.store.limit import ENV_MAX_GB, GB, cap_from_config, entries, parse_max_gb, prune

KB = 1000


def _entry(root: Path, part: str, name: str, size: int, age_s: float, *extra: str) -> list[Path]:
    """Files of one cache entry, last used `age_s` seconds ago (a .lock file beside it)."""
    folder = root / part / "ab"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.time() - age_s
    files = [folder / name, *(folder / e for e in extra)]
    for f in files:
        f.write_bytes(b"x" * size)
        os.utime(f, (stamp, stamp))
    (folder / (name + ".lock")).touch()
    return files


def test_prune_evicts_the_least_recently_used_first(tmp_path: Path) -> None:
    old = _entry(tmp_path, "activations", "old.pact", 40 * KB, age_s=3000)
    mid = _entry(tmp_path, "results", "mid.json", 40 * KB, age_s=2000)
    new = _entry(tmp_path, "activations", "new.pact", 40 * KB, age_s=1000)
    result = prune(tmp_path, 90 * KB)
    assert result.removed == 1 and result.freed == 40 * KB and result.remaining == 80 * KB
    assert not old[0].exists() and mid[0].exists() and new[0].exists()
    assert (old[0].parent / "old.pact.lock").exists()  # locks stay: a writer may hold them
    assert prune(tmp_path, 90 * KB).removed == 0  # already fits
    assert prune(tmp_path, 0).removed == 2 and not list(tmp_path.rglob("*.pact")) and not mid[0].exists()


def test_a_zoo_entry_goes_as_a_whole(tmp_path: Path) -> None:
    zoo = _entry(tmp_path, "zoo", "mlp-digits-v1-seed0.safetensors", 50 * KB, 3000, "mlp-digits-v1-seed0.json")
    keep = _entry(tmp_path, "zoo", "mlp-digits-v1-seed1.safetensors", 50 * KB, 10, "mlp-digits-v1-seed1.json")
    assert [len(e.files) for e in entries(tmp_path)] == [2, 2]
    assert prune(tmp_path, 150 * KB).removed == 1
    assert not any(f.exists() for f in zoo) and all(f.exists() for f in keep)


def test_reading_an_entry_makes_it_recently_used(tmp_path: Path) -> None:
    cache = ActivationCache(tmp_path / "activations")
    x = np.ones((50, 40), np.float32)
    keys = [entry_key("m", "p", site) for site in ("a", "b")]
    for key in keys:
        cache.store(key, x, np.arange(50), None)
        os.utime(cache.path(key), (time.time() - 3600,) * 2)
    assert cache.load(keys[0]).entry is not None  # read: now the most recently used
    size = cache.path(keys[0]).stat().st_size
    assert prune(tmp_path, size).removed == 1
    assert cache.path(keys[0]).exists() and not cache.path(keys[1]).exists()


def test_entries_this_run_used_are_never_evicted(tmp_path: Path) -> None:
    used = _entry(tmp_path, "activations", "used.pact", 60 * KB, age_s=0)
    old = _entry(tmp_path, "activations", "old.pact", 60 * KB, age_s=3000)
    result = prune(tmp_path, 50 * KB, keep_since=time.time() - 60)
    assert used[0].exists() and not old[0].exists()
    assert result.removed == 1 and result.in_use == 60 * KB and result.remaining == 60 * KB
    lines = result.lines(tmp_path, 50 * KB / GB)
    assert len(lines) == 2 and "evicted 1 least recently used" in lines[0]
    assert "over --cache-max-gb" in lines[1] and "raise the cap" in lines[1]


def test_temp_files_of_a_writer_are_never_touched(tmp_path: Path) -> None:
    folder = tmp_path / "activations" / "ab"
    folder.mkdir(parents=True)
    tmp = folder / ".abcdef-123.tmp"
    tmp.write_bytes(b"x" * 1000)
    assert prune(tmp_path, 0).removed == 0 and tmp.exists()


@pytest.mark.parametrize("text", ["lots", "-1", "nan", "inf", ""])
def test_bad_caps_are_one_line(text: str) -> None:
    with pytest.raises(PolyauditError) as info:
        parse_max_gb(text)
    assert "\n" not in str(info.value) and "--cache-max-gb" in str(info.value)


def test_cap_from_option_then_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_MAX_GB, raising=False)
    assert cap_from_config(None, str(tmp_path)) is None
    monkeypatch.setenv(ENV_MAX_GB, "2.5")
    cap = cap_from_config(None, str(tmp_path))
    assert cap is not None and cap.max_gb == 2.5 and cap.root == tmp_path
    assert time.time() - 5 < cap.since <= time.time()
    cap2 = cap_from_config("0.5", str(tmp_path))
    assert cap2 is not None and cap2.max_gb == 0.5
    monkeypatch.setenv(ENV_MAX_GB, "big")
    with pytest.raises(PolyauditError, match=r"\$POLYAUDIT_CACHE_MAX_GB 'big'"):
        cap_from_config(None, str(tmp_path))


def test_cli_prune(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(ENV_MAX_GB, raising=False)
    old = _entry(tmp_path, "activations", "old.pact", 600 * KB, age_s=3000)
    new = _entry(tmp_path, "results", "new.json", 600 * KB, age_s=10)
    assert main(["cache", "prune", "--cache-dir", str(tmp_path)]) == EXIT_REFUSED
    assert "pass --max-gb" in capsys.readouterr().err
    assert main(["cache", "prune", "--cache-dir", str(tmp_path), "--max-gb", "x"]) == EXIT_REFUSED
    assert main(["cache", "prune", "--cache-dir", str(tmp_path), "--max-gb", "0.001"]) == EXIT_OK
    assert "removed 1 least recently used entries" in capsys.readouterr().out
    assert not old[0].exists() and new[0].exists()
    monkeypatch.setenv(ENV_MAX_GB, "0")
    assert main(["cache", "prune", "--cache-dir", str(tmp_path)]) == EXIT_OK
    assert not new[0].exists()


# --- processes racing on one entry ------------------------------------------------------------
WRITER = textwrap.dedent(
    """
    import sys, warnings
    import numpy as np
    from polyaudit.store.activations import ActivationCache
    from polyaudit.store.results import load_or_compute
    from polyaudit.verdict import Evidence
    from pathlib import Path

    root, key, me = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    warnings.simplefilter("error")  # a corrupt entry seen mid-race would be a PolyauditCacheWarning
    x = np.full((400, 64), float(me), np.float32)  # each writer's own content
    cache = ActivationCache(root / "activations")
    for i in range(25):
        cache.store(key, x, np.arange(400), None)
        found = cache.load(key)
        assert found.entry is not None and not found.corrupt
        value = found.entry.samples[0, 0]
        assert (found.entry.samples == value).all(), "an entry mixes two writers"
        ev = {"s": Evidence("C4", 1, "s", "stat", float(me), (0.0, 1.0), 0.01, 10)}
        got, _ = load_or_compute(root / "results", key, lambda: ev)
        assert got["s"].effect in range(8)
    """
)


def test_processes_writing_the_same_entry_leave_one_valid_entry(tmp_path: Path) -> None:
    key = entry_key("model", "probe", "blocks.0.resid")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), key, str(me)], env=env,
                              stderr=subprocess.PIPE, text=True) for me in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    cache = ActivationCache(tmp_path / "activations")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PolyauditCacheWarning)
        entry = cache.load(key).entry
    assert entry is not None and entry.samples.shape == (400, 64)
    assert entry.samples[0, 0] in range(4) and (entry.samples == entry.samples[0, 0]).all()
    assert sorted(p.name for p in (tmp_path / "activations").rglob("*") if p.is_file()) == [
        f"{key}.pact", f"{key}.pact.lock"]  # no temp file left behind
    assert [p.name for p in (tmp_path / "results").iterdir() if not p.name.endswith(".lock")] == [f"{key}.json"]
