"""Report rows: one per claim x model x site, in the stable schema of DESIGN section 6.

Row fields (never renamed): claim, claim_version, test_id, model, site, statistic, effect,
ci [lo, hi], p, p_adj, n, verdict, notes, details. Non-finite numbers become null in JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from polyaudit.verdict import Evidence, Verdict

ROW_KEY = "polyaudit_row"
SCHEMA = "polyaudit.report/1"


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


def make_row(
    ev: Evidence,
    verdict: Verdict,
    *,
    test_id: str,
    nodeid: str,
    model: str,
    provenance: Mapping[str, Any],
) -> dict[str, Any]:
    notes = ev.notes
    if verdict.reason and verdict.status.value in ("ERROR", "SKIPPED"):
        notes = f"{verdict.reason}; {notes}" if notes else verdict.reason
    row = {
        "claim": ev.claim,
        "claim_version": ev.claim_version,
        "test_id": test_id,
        "nodeid": nodeid,
        "model": model,
        "site": ev.site,
        "statistic": ev.statistic,
        "effect": ev.effect,
        "ci": list(ev.ci),
        "p": ev.p,
        "p_adj": ev.p if ev.p_adj is None else ev.p_adj,
        "n": ev.n,
        "predicted": ev.predicted,
        "min_effect": ev.min_effect,
        "verdict": verdict.status.value,
        "reason": verdict.reason,
        "notes": notes,
        "details": dict(ev.details),
        "provenance": dict(provenance),
    }
    return jsonable(row)


def dumps_row(row: Mapping[str, Any]) -> str:
    return json.dumps(row, sort_keys=True, allow_nan=False)


def encode_array(x: Any) -> dict[str, Any]:
    """Compact JSON form of a float vector (bootstrap replicates, per-sample values) so a later run
    can pair its statistics with this one: float32, zlib, base64."""
    import base64
    import zlib

    arr = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    return {"dtype": "float32", "shape": list(arr.shape),
            "zlib_b64": base64.b64encode(zlib.compress(arr.tobytes(), 6)).decode("ascii")}


def decode_array(d: Mapping[str, Any]) -> np.ndarray:
    """Inverse of encode_array; raises ValueError on anything malformed."""
    import base64
    import binascii
    import zlib

    try:
        if d.get("dtype") != "float32":
            raise ValueError(f"unsupported dtype {d.get('dtype')!r}")
        raw = zlib.decompress(base64.b64decode(str(d["zlib_b64"]), validate=True))
        arr = np.frombuffer(raw, dtype=np.float32)
        return arr.reshape([int(s) for s in d["shape"]])
    except (KeyError, TypeError, binascii.Error, zlib.error) as e:
        raise ValueError(f"malformed encoded array: {e}") from None
