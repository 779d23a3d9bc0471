"""Where polyaudit keeps its caches: one root for activations, results, the zoo and report plots."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """`--cache-dir` when given, else $POLYAUDIT_CACHE, else ~/.cache/polyaudit."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("POLYAUDIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "polyaudit"
