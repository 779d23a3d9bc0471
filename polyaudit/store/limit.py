"""A size cap on the cache folder: least-recently-used eviction.

`--cache-max-gb GB` (or `$POLYAUDIT_CACHE_MAX_GB`) caps polyaudit's cache folders (`activations/`,
`results/`, `zoo/` under the cache root). Every reader of an entry touches it (its mtime becomes the
time it was last used) and every writer sets it, so after a run the entries used longest ago are
removed first until the folder fits. Entries this run read or wrote (last used since it started)
are never evicted: if they alone exceed the cap, the run says so in one line instead. The same
pruning is `polyaudit cache prune --max-gb GB`.

An entry is every file of one stem in one folder (`KEY.pact`; `STEM.safetensors` + `STEM.json` for
the zoo). Lock files and temp files (names starting with a dot) are never removed: a concurrent
writer may hold them, and they take no space worth counting.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from polyaudit.errors import PolyauditError
from polyaudit.store.root import cache_root

ENV_MAX_GB = "POLYAUDIT_CACHE_MAX_GB"
PARTS = ("activations", "results", "zoo", "plots")
GB = 10**9


def size_text(n: float) -> str:
    """Bytes in decimal units, as the cap is given: 1.23 GB, 4.5 MB, 6.7 kB."""
    for unit, size in (("GB", GB), ("MB", 10**6)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n / 1000:.3g} kB"


def parse_max_gb(text: object, where: str = "--cache-max-gb") -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise PolyauditError(f"{where} {text!r} is not a number: give the cap in gigabytes, e.g. 5 or 0.5") from None
    if not math.isfinite(value) or value < 0:
        raise PolyauditError(f"{where} {text!r} must be a finite number of gigabytes >= 0, e.g. 5")
    return value


def touch(path: Path) -> None:
    """Mark a cache entry as used now (the LRU clock). A read-only cache cannot be touched, and
    then cannot be pruned by this process either, so that is not an error."""
    with contextlib.suppress(PermissionError):
        os.utime(path)


@dataclass(frozen=True)
class Entry:
    files: tuple[Path, ...]
    size: int
    last_used: float


def _stem(name: str) -> str:
    if name.endswith(".lock"):
        name = name[: -len(".lock")]
    return name.rsplit(".", 1)[0] if "." in name else name


def entries(root: Path) -> list[Entry]:
    """The cache entries under polyaudit's folders of `root`, least recently used first."""
    groups: dict[tuple[Path, str], list[tuple[Path, os.stat_result]]] = {}
    for part in PARTS:
        folder = root / part
        if not folder.is_dir():
            continue
        for path in folder.rglob("*"):
            if path.name.startswith(".") or path.name.endswith(".lock"):
                continue
            try:
                st = path.stat()
            except FileNotFoundError:  # removed meanwhile by another process
                continue
            if path.is_file():
                groups.setdefault((path.parent, _stem(path.name)), []).append((path, st))
    out = [
        Entry(tuple(p for p, _ in files), sum(st.st_size for _, st in files), max(st.st_mtime for _, st in files))
        for files in groups.values()
    ]
    return sorted(out, key=lambda e: (e.last_used, str(e.files[0])))


@dataclass(frozen=True)
class PruneResult:
    removed: int
    freed: int
    remaining: int  # bytes left in the cache
    in_use: int  # bytes of entries that were not evicted because this run used them

    def lines(self, root: Path, max_gb: float) -> list[str]:
        out = []
        if self.removed:
            out.append(f"evicted {self.removed} least recently used entries ({size_text(self.freed)}) "
                       f"to keep {root} under --cache-max-gb {max_gb:g}")
        if self.remaining > max_gb * GB:
            out.append(f"{root} holds {size_text(self.remaining)}, over --cache-max-gb {max_gb:g}, in entries "
                       f"this run used ({size_text(self.in_use)}): raise the cap to keep them cached")
        return out


def prune(root: Path, max_bytes: float, keep_since: float | None = None) -> PruneResult:
    """Remove least recently used entries until the cache fits `max_bytes`, sparing entries used
    at or after `keep_since` (a time.time() value; None spares nothing)."""
    found = entries(root)
    total = sum(e.size for e in found)
    removed = freed = in_use = 0
    for e in found:
        if total <= max_bytes:
            break
        if keep_since is not None and e.last_used >= keep_since:
            in_use += e.size
            continue
        for f in e.files:
            f.unlink(missing_ok=True)
        removed, freed, total = removed + 1, freed + e.size, total - e.size
    return PruneResult(removed, freed, total, in_use)


@dataclass(frozen=True)
class CacheCap:
    """The cap of one run: enforced once, after the run's last write."""

    root: Path
    max_gb: float
    since: float  # when the run started: entries used since then are in use

    def enforce(self) -> list[str]:
        return prune(self.root, self.max_gb * GB, keep_since=self.since).lines(self.root, self.max_gb)


def cap_from_config(option: str | None, cache_dir: str | None) -> CacheCap | None:
    """The run's cap from --cache-max-gb, else $POLYAUDIT_CACHE_MAX_GB; None without either."""
    if option is not None:
        value = parse_max_gb(option)
    elif os.environ.get(ENV_MAX_GB, "").strip():
        value = parse_max_gb(os.environ[ENV_MAX_GB], f"${ENV_MAX_GB}")
    else:
        return None
    # one second of slack: file systems with coarse timestamps may date a touch a little early
    return CacheCap(cache_root(cache_dir), value, time.time() - 1.0)
