"""Serialisation helpers every layer may use: JSON-safe values, compact arrays, stable hashes, and
atomic file writes (a reader never sees a half-written file; a failed run never truncates an old
one)."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import math
import os
import tempfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np


def jsonable(x: Any) -> Any:
    """Convert numpy scalars/arrays and non-finite floats into JSON-safe values."""
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        f = float(x)
        return f if math.isfinite(f) else None
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if x is None or isinstance(x, (str, int, bool)):
        return x
    return str(x)


def encode_array(x: Any) -> dict[str, Any]:
    """Compact JSON form of a float vector (bootstrap replicates, per-sample values) so a later run
    can pair its statistics with this one: float32, zlib, base64."""
    arr = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    return {"dtype": "float32", "shape": list(arr.shape),
            "zlib_b64": base64.b64encode(zlib.compress(arr.tobytes(), 6)).decode("ascii")}


def decode_array(d: Mapping[str, Any]) -> np.ndarray:
    """Inverse of encode_array; raises ValueError on anything malformed."""
    try:
        if d.get("dtype") != "float32":
            raise ValueError(f"unsupported dtype {d.get('dtype')!r}")
        raw = zlib.decompress(base64.b64decode(str(d["zlib_b64"]), validate=True))
        arr = np.frombuffer(raw, dtype=np.float32)
        return arr.reshape([int(s) for s in d["shape"]])
    except (KeyError, TypeError, binascii.Error, zlib.error) as e:
        raise ValueError(f"malformed encoded array: {e}") from None


def stable_int(*keys: object) -> int:
    """A process-independent integer from keys (Python's hash() is salted per process)."""
    h = hashlib.sha256("\x1f".join(map(str, keys)).encode()).digest()
    return int.from_bytes(h[:8], "little")


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None], mode: int = 0o644) -> Path:
    """Write `path` through `write(tmp)` on a temp file in the same folder, then os.replace it into
    place (removing the temp file whatever happens)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, mode)  # mkstemp creates 0600; reports and cache entries are meant to be read
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """`atomic_write` of bytes, flushed to disk before the move."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    return atomic_write(path, write)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))
