"""Report rows: one per claim x model x site, in the stable schema of DESIGN section 6.

Row fields (never renamed): claim, claim_version, test_id, model, site, statistic, effect,
ci [lo, hi], p, p_adj, n, verdict, notes, details. Non-finite numbers become null in JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from polyaudit.serial import jsonable
from polyaudit.verdict import Evidence, Verdict, origin

SCHEMA = "polyaudit.report/1"


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
    source = origin(ev, verdict)
    reason = verdict.reason if source is None else f"{verdict.reason}; {source[1]}"
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
        "reason": reason,
        "notes": notes,
        "details": dict(ev.details),
        "caveat": ev.caveat,
        "control": None if ev.control is None else dict(ev.control),
        "vs_control": None if ev.vs_control is None else dict(ev.vs_control),
        "origin": None if source is None else source[0],
        "provenance": dict(provenance),
    }
    return jsonable(row)


def dumps_row(row: Mapping[str, Any]) -> str:
    return json.dumps(row, sort_keys=True, allow_nan=False)
