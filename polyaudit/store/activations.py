"""On-disk cache of captured activations, one file per (model, probe, site).

Layout: `<root>/<key[:2]>/<key>.pact`, root defaulting to `$POLYAUDIT_CACHE/activations`
(`$POLYAUDIT_CACHE` defaults to `~/.cache/polyaudit`). The key is the sha256 of the model hash,
the probe digest, the site name, the capture format version, the polyaudit version, and the
model's dtype and device type (which change the numbers too).

File format (little endian):

    8 bytes   magic b"PAUDACT1"
    32 bytes  sha256 of everything after it (header length + header + payload)
    4 bytes   uint32 header length H
    H bytes   UTF-8 JSON header: {"format", "key", "n", "d", "scale", "has_labels", "has_codes"}
    payload   samples / scale as float16 [n, d] C order, then groups int64 [n], then labels int64 [n],
              then (has_codes) the spline codes bit-packed, uint8 [n, ceil(d / 8)] (numpy.packbits)

`scale` is a power of two chosen per entry so that the largest finite |x| maps to at most 2**15,
well inside float16's range (65504): activations of any magnitude (1e6 and beyond) round-trip with
float16's relative precision (~5e-4) and never overflow; NaN and inf are kept as they are.
Pre-activation sites also store their spline codes (sign > 0) taken from the float32 values before
rounding, 8 per byte, so codes read back from the cache are exact even where float16 underflows.
Entries are written to a temp file in the same folder and moved in place with os.replace, under a
filelock, so concurrent writers (pytest-xdist) never expose a partial file. A truncated,
bit-flipped or foreign entry fails the checksum, magic or key check: it is reported with one
PolyauditCacheWarning line, deleted, and recomputed by the caller.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock

from polyaudit.errors import PolyauditCacheWarning
from polyaudit.serial import atomic_write_bytes
from polyaudit.store.limit import touch
from polyaudit.store.root import cache_root

MAGIC = b"PAUDACT1"
FORMAT_VERSION = 2  # 2: optional bit-packed spline codes
SUFFIX = ".pact"
_TARGET_MAX = 2.0**15


@dataclass(frozen=True)
class CachedActivations:
    samples: np.ndarray  # float32 [n, d]
    groups: np.ndarray  # int64 [n]
    labels: np.ndarray | None  # int64 [n]
    codes: np.ndarray | None = None  # uint8 [n, ceil(d / 8)]: bit-packed spline codes, if stored


@dataclass(frozen=True)
class Lookup:
    """Result of a cache read: the entry, or None with `corrupt` telling a bad entry from a miss."""

    entry: CachedActivations | None
    corrupt: bool = False


class _Corrupt(Exception):
    pass


def default_root() -> Path:
    return cache_root() / "activations"


def entry_key(model_sha256: str, probe_digest: str, site_name: str, *extra: str) -> str:
    from polyaudit.version import __version__

    parts = [
        model_sha256,
        probe_digest,
        site_name,
        f"format={FORMAT_VERSION}",
        f"polyaudit={__version__}",
        *extra,
    ]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def as_stored(x: np.ndarray) -> np.ndarray:
    """`x` as a cache entry stores it: float16 after dividing by the entry's power-of-two scale,
    read back as float32 (NaN/inf kept)."""
    scale = float16_scale(x)
    return (x / scale).astype(np.float16).astype(np.float32) * np.float32(scale)


def float16_scale(x: np.ndarray) -> float:
    """Power-of-two scale such that max finite |x| / scale <= 2**15 (1.0 for all-zero input)."""
    finite = x[np.isfinite(x)]
    peak = float(np.max(np.abs(finite))) if finite.size else 0.0
    if peak == 0.0:
        return 1.0
    return float(2.0 ** math.ceil(math.log2(peak / _TARGET_MAX)))


def encode(
    key: str,
    samples: np.ndarray,
    groups: np.ndarray,
    labels: np.ndarray | None,
    codes: np.ndarray | None = None,
) -> bytes:
    """The bytes of one cache entry (see the module docstring); `codes` bit-packed uint8."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"samples must be 2-D, got shape {x.shape}")
    n, d = x.shape
    scale = float16_scale(x)
    with np.errstate(invalid="ignore", over="ignore"):
        x16 = (x / np.float32(scale)).astype("<f2")
    parts = [x16.tobytes(order="C"), np.asarray(groups, dtype="<i8").reshape(n).tobytes()]
    if labels is not None:
        parts.append(np.asarray(labels, dtype="<i8").reshape(n).tobytes())
    if codes is not None:
        packed = np.ascontiguousarray(codes, dtype=np.uint8)
        if packed.shape != (n, (d + 7) // 8):
            raise ValueError(f"packed codes must be [{n}, {(d + 7) // 8}], got {packed.shape}")
        parts.append(packed.tobytes())
    header = json.dumps(
        {
            "format": FORMAT_VERSION,
            "key": key,
            "n": n,
            "d": d,
            "scale": scale,
            "has_labels": labels is not None,
            "has_codes": codes is not None,
        },
        sort_keys=True,
    ).encode()
    body = struct.pack("<I", len(header)) + header + b"".join(parts)
    return MAGIC + hashlib.sha256(body).digest() + body


def decode(key: str, blob: bytes) -> CachedActivations:
    """Parse and verify one entry; raises _Corrupt with the reason."""
    head = len(MAGIC) + 32
    if len(blob) < head + 4 or blob[: len(MAGIC)] != MAGIC:
        raise _Corrupt("not a polyaudit activation file")
    view = memoryview(blob)[len(MAGIC) + 32 :]
    if hashlib.sha256(view).digest() != blob[len(MAGIC) : head]:
        raise _Corrupt("checksum mismatch (truncated or modified)")
    (hlen,) = struct.unpack_from("<I", blob, head)
    try:
        meta = json.loads(bytes(blob[head + 4 : head + 4 + hlen]).decode())
        n, d, scale, has_labels = (
            int(meta["n"]),
            int(meta["d"]),
            float(meta["scale"]),
            bool(meta["has_labels"]),
        )
        fmt, stored_key = meta["format"], meta["key"]
        has_codes = bool(meta.get("has_codes", False))
    except (ValueError, KeyError, TypeError) as e:
        raise _Corrupt(f"bad header ({e})") from None
    if fmt != FORMAT_VERSION or stored_key != key:
        raise _Corrupt("entry belongs to another key or format")
    off = head + 4 + hlen
    code_bytes = n * ((d + 7) // 8) if has_codes else 0
    expected = off + n * d * 2 + n * 8 * (2 if has_labels else 1) + code_bytes
    if len(blob) != expected:
        raise _Corrupt(f"size {len(blob)} != expected {expected}")
    x16 = np.frombuffer(blob, dtype="<f2", count=n * d, offset=off).reshape(n, d)
    samples = x16.astype(np.float32) * np.float32(scale)
    off += n * d * 2
    groups = np.frombuffer(blob, dtype="<i8", count=n, offset=off).astype(np.int64)
    labels = (
        np.frombuffer(blob, dtype="<i8", count=n, offset=off + n * 8).astype(np.int64)
        if has_labels
        else None
    )
    off += n * 8 * (2 if has_labels else 1)
    codes = (
        np.frombuffer(blob, dtype=np.uint8, count=code_bytes, offset=off).reshape(n, (d + 7) // 8).copy()
        if has_codes
        else None
    )
    return CachedActivations(samples=samples, groups=groups, labels=labels, codes=codes)


class ActivationCache:
    """Activation entries on disk, keyed by `entry_key(...)`."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()
        self._write_failed = False

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}{SUFFIX}"

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold an inter-process lock named `key` (no lock where the cache cannot be written)."""
        lock = FileLock(str(self.root / "locks" / f"{key}.lock"))
        try:
            (self.root / "locks").mkdir(parents=True, exist_ok=True)
            lock.acquire()
        except OSError:
            yield
            return
        try:
            yield
        finally:
            lock.release()

    def load(self, key: str) -> Lookup:
        """The entry under `key`; a missing entry is a plain miss, a bad one warns once and is removed."""
        p = self.path(key)
        try:
            blob = p.read_bytes()
        except FileNotFoundError:
            return Lookup(None)
        try:
            found = Lookup(decode(key, blob))
        except _Corrupt as e:
            warnings.warn(
                f"polyaudit: corrupt activation cache entry {p} ({e}); recomputing it",
                PolyauditCacheWarning,
                stacklevel=2,
            )
            p.unlink(missing_ok=True)
            return Lookup(None, corrupt=True)
        touch(p)  # last used now: the size cap (--cache-max-gb) evicts least recently used first
        return found

    def store(
        self,
        key: str,
        samples: np.ndarray,
        groups: np.ndarray,
        labels: np.ndarray | None,
        codes: np.ndarray | None = None,
    ) -> None:
        """Write an entry atomically; an unwritable cache warns once and the run goes on."""
        p = self.path(key)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(p) + ".lock"):
                atomic_write_bytes(p, encode(key, samples, groups, labels, codes))
        except OSError as e:
            if not self._write_failed:
                self._write_failed = True
                warnings.warn(
                    f"polyaudit: cannot write the activation cache at {self.root} ({e.strerror}); "
                    "set POLYAUDIT_CACHE to a writable folder",
                    PolyauditCacheWarning,
                    stacklevel=2,
                )
