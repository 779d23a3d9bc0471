"""A results cache for claim measurements: Evidence keyed by everything that determines it (model
weights hash, probe hash, claim and version, profile, seed, polyaudit version), stored as JSON with a
checksum. A warm rerun of an audit reads its numbers here without a forward pass or a bootstrap;
a corrupt entry is reported in one line and recomputed."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from polyaudit.report.io import atomic_write_text
from polyaudit.verdict import Evidence, evidence_from_dict, evidence_to_dict

FORMAT = 1


class CacheWarning(UserWarning):
    """A cache entry was unreadable or failed its checksum and was recomputed."""


def results_key(**parts: Any) -> str:
    blob = json.dumps({k: parts[k] for k in sorted(parts)}, sort_keys=True, default=str)
    return hashlib.sha256(f"results/{FORMAT}|{blob}".encode()).hexdigest()


def _checksum(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, allow_nan=False).encode()).hexdigest()


def load_or_compute(
    root: Path | None, key: str, compute: Callable[[], dict[str, Evidence]]
) -> tuple[dict[str, Evidence], bool]:
    """(evidence by site, served_from_cache)."""
    path = None if root is None else root / f"{key}.json"
    if path is not None and path.exists():
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            payload = doc["payload"]
            if doc.get("sha256") != _checksum(payload):
                raise ValueError("checksum mismatch")
            return {site: evidence_from_dict(ev) for site, ev in payload.items()}, True
        except (OSError, ValueError, KeyError, TypeError) as e:
            warnings.warn(f"polyaudit: results cache entry {path.name} is corrupt ({e}); recomputing",
                          CacheWarning, stacklevel=2)
    evidence = compute()
    if path is not None:
        payload = {site: evidence_to_dict(ev) for site, ev in evidence.items()}
        atomic_write_text(path, json.dumps({"sha256": _checksum(payload), "payload": payload}, sort_keys=True))
    return evidence, False


def profile_fields(profile: Any) -> dict[str, Any]:
    return dataclasses.asdict(profile)
