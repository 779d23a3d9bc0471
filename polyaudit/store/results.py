"""A results cache for claim measurements: Evidence keyed by everything that determines it (model
weights hash, probe hash, claim and version, a hash of the code that computes it, profile, seed,
correction, polyaudit version), stored as JSON with a checksum. A warm rerun of an audit reads its
numbers here without a forward pass or a bootstrap; a corrupt entry is reported in one line and
recomputed; an edited analysis never serves stale numbers (`code_digest`)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock

from polyaudit.errors import PolyauditCacheWarning
from polyaudit.serial import atomic_write_text, decode_array, encode_array
from polyaudit.store.limit import touch
from polyaudit.verdict import Evidence, evidence_from_dict, evidence_to_dict

FORMAT = 1


_DIGESTS: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}


def _module_file(name: str) -> Path | None:
    """The source file of a polyaudit module, found on disk without importing anything (None for a
    name that is not a module, e.g. the `X` of `from polyaudit.m import X`)."""
    parts = name.split(".")[1:]
    base = Path(__file__).resolve().parent.parent.joinpath(*parts)
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _polyaudit_imports(path: Path) -> set[str]:
    """The polyaudit modules a source file imports (module or function level), as dotted names."""
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return {n for n in names if n == "polyaudit" or n.startswith("polyaudit.")}


def code_closure(modules: tuple[str, ...], files: tuple[str, ...] = ()) -> dict[str, Path]:
    """Source files of `modules` and `files` and of every polyaudit module they import, transitively
    (module or function level), by module name (files by their path)."""
    seen: dict[str, Path] = {}
    todo = [(m, _module_file(m)) for m in modules] + [(f, Path(f)) for f in files]
    while todo:
        name, path = todo.pop()
        if path is None or name in seen or not path.is_file():
            continue
        seen[name] = path
        todo.extend((m, _module_file(m)) for m in _polyaudit_imports(path))
    return seen


def code_digest(modules: tuple[str, ...], files: tuple[str, ...] = ()) -> str:
    """sha256 of the source of `code_closure(modules, files)`: the code that computes a claim's
    numbers, so an edited analysis never serves stale cached numbers (memoised per process)."""
    key = (tuple(modules), tuple(files))
    if key not in _DIGESTS:
        seen = code_closure(modules, files)
        h = hashlib.sha256()
        for name in sorted(seen):
            h.update(f"{name}\n".encode())
            h.update(seen[name].read_bytes())
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def results_key(**parts: Any) -> str:
    blob = json.dumps({k: parts[k] for k in sorted(parts)}, sort_keys=True, default=str)
    return hashlib.sha256(f"results/{FORMAT}|{blob}".encode()).hexdigest()


def _checksum(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, allow_nan=False).encode()).hexdigest()


def load_or_compute(
    root: Path | None, key: str, compute: Callable[[], dict[str, Evidence]]
) -> tuple[dict[str, Evidence], bool]:
    """(evidence by site, served_from_cache). Computed under a file lock on the entry, so
    parallel workers (pytest-xdist) that need the same measurement compute it once: the others
    wait and read what the first one wrote."""
    if root is None:
        return _stored(compute()), False
    path = root / f"{key}.json"
    found = _load(path)
    if found is not None:
        return found, True
    lock = FileLock(str(path) + ".lock")
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except OSError:  # a read-only cache: measure without it
        return _stored(compute()), False
    try:
        found = _load(path)  # another worker may have written it while this one waited
        if found is not None:
            return found, True
        evidence = _stored(compute())
        payload = {site: _to_json(ev) for site, ev in evidence.items()}
        with contextlib.suppress(OSError):  # a full or read-only disk costs the cache, not the result
            atomic_write_text(path, json.dumps({"sha256": _checksum(payload), "payload": payload}, sort_keys=True))
    finally:
        lock.release()
    return evidence, False


def _stored(evidence: Mapping[str, Evidence]) -> dict[str, Evidence]:
    """The evidence as the cache keeps it: replicates (which pair a row with its control twin's) at
    the float32 precision they are stored in, so a computed run and a cached one give the same numbers."""
    return {site: ev if ev.replicates is None else dataclasses.replace(
        ev, replicates=decode_array(encode_array(ev.replicates)).astype("float64")) for site, ev in evidence.items()}


def _to_json(ev: Evidence) -> dict[str, Any]:
    d = evidence_to_dict(ev)
    if ev.replicates is not None:
        d["replicates"] = encode_array(ev.replicates)
    return d


def _from_json(d: Mapping[str, Any]) -> Evidence:
    ev = evidence_from_dict(d)
    reps = d.get("replicates")
    return ev if reps is None else dataclasses.replace(ev, replicates=decode_array(reps).astype("float64"))


def _load(path: Path) -> dict[str, Evidence] | None:
    """The entry at `path`, or None when missing; a corrupt entry warns once and reads as missing."""
    if path.exists():
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            payload = doc["payload"]
            if doc.get("sha256") != _checksum(payload):
                raise ValueError("checksum mismatch")
            evidence = {site: _from_json(ev) for site, ev in payload.items()}
            touch(path)  # last used now, for the size cap's least-recently-used eviction
            return evidence
        except (OSError, ValueError, KeyError, TypeError) as e:
            warnings.warn(f"polyaudit: results cache entry {path.name} is corrupt ({e}); recomputing",
                          PolyauditCacheWarning, stacklevel=3)
            path.unlink(missing_ok=True)
    return None


def profile_fields(profile: Any) -> dict[str, Any]:
    return dataclasses.asdict(profile)
