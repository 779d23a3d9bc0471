"""The JSON report document (schema `polyaudit.report/1`) and run provenance."""

from __future__ import annotations

import datetime as _dt
import json
import platform
import subprocess
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from polyaudit.report.rows import SCHEMA
from polyaudit.serial import jsonable

_PACKAGES = ("polyaudit", "torch", "transformers", "numpy", "scipy", "scikit-learn", "pytest")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit(root: Path | None = None) -> str | None:
    """The project's git commit, when run inside a checkout (provenance only)."""
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root or Path.cwd(), capture_output=True,
            text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def utc_stamp(now: _dt.datetime | None = None) -> str:
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ")


def _unique(items: Sequence[Mapping[str, Any]], key: str) -> list[dict[str, Any]]:
    seen: dict[Any, dict[str, Any]] = {}
    for it in items:
        if it and it.get(key) not in seen:
            seen[it.get(key)] = dict(it)
    return list(seen.values())


def build_document(rows: Sequence[Mapping[str, Any]], run: Mapping[str, Any]) -> dict[str, Any]:
    """Assemble the report: provenance from the run and from the rows' own provenance."""
    models = _unique([r.get("provenance", {}).get("model", {}) for r in rows], "spec")
    if not models:
        models = [{"spec": s, "revision": None, "sha256": None} for s in run.get("models", [])]
    probes = _unique([r.get("provenance", {}).get("probe", {}) for r in rows], "sha256")
    clean_rows = []
    for r in rows:
        row = {k: v for k, v in r.items() if k != "provenance"}
        prov = r.get("provenance", {})
        row["probe_sha256"] = prov.get("probe", {}).get("sha256")
        clean_rows.append(row)
    doc = {
        "schema": SCHEMA,
        "created": run.get("created"),
        "model": models[0] if models else {"spec": None, "revision": None, "sha256": None},
        "models": models,
        "probe": probes[0] if probes else {},
        "probes": probes,
        "seed": run.get("seed"),
        "profile": run.get("profile"),
        "correction": run.get("correction"),
        "control": run.get("control"),
        "control_twins": run.get("control_twins"),
        "device": run.get("device"),
        "dtype": run.get("dtype"),
        "versions": run.get("versions", {}),
        "git_commit": run.get("git_commit"),
        "claim_versions": {r["claim"]: r["claim_version"] for r in rows},
        "summary": summarize(rows),
        "rows": clean_rows,
    }
    if run.get("baseline") is not None:
        doc["baseline"] = run["baseline"]  # the --baseline this run was compared with (rows: row["baseline"])
    return jsonable(doc)


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[str(r.get("verdict"))] = out.get(str(r.get("verdict")), 0) + 1
    return dict(sorted(out.items()))


def dumps(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n"
