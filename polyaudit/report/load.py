"""Reading reports back: JSON-schema validation and the integrity checksum.

Every JSON report polyaudit writes (`reports/<model>/<timestamp>.json`, `--json`, `--save-baseline`)
carries `integrity = {"algorithm": "sha256", "canonical": ..., "sha256": HEX}`: the sha256 of the
canonical JSON (sorted keys, compact separators, UTF-8) of the document without `integrity`. So any
report can serve as a baseline, and one that was edited by hand or cut short is refused with one
line instead of gating a checkpoint against numbers nobody measured.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from polyaudit.errors import PolyauditError

SCHEMA_FILE = Path(__file__).with_name("schema.json")
INTEGRITY_KEY = "integrity"
CANONICAL = "json:sort_keys,compact,utf-8"


@functools.lru_cache(maxsize=1)
def report_schema() -> dict[str, Any]:
    """The JSON schema of `polyaudit.report/1` kept in the repository (polyaudit/report/schema.json)."""
    schema: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return schema


def canonical_bytes(doc: Mapping[str, Any]) -> bytes:
    payload = {k: v for k, v in doc.items() if k != INTEGRITY_KEY}
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def payload_sha256(doc: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(doc)).hexdigest()


def sign(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The document with its integrity record (recomputed; an old one is replaced)."""
    out = {k: v for k, v in doc.items() if k != INTEGRITY_KEY}
    out[INTEGRITY_KEY] = {"algorithm": "sha256", "canonical": CANONICAL, "sha256": payload_sha256(out)}
    return out


def schema_errors(doc: Any, limit: int = 5) -> list[str]:
    """Human-readable schema violations (`rows/0/verdict: 'MAYBE' is not one of [...]`), first few."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(report_schema())
    out = []
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        out.append(f"{where}: {err.message[:160]}")
        if len(out) >= limit:
            break
    return out


def validate(doc: Any, label: str = "report") -> None:
    """Raise a one-line PolyauditError when `doc` does not follow the report schema."""
    errors = schema_errors(doc, limit=1)
    if errors:
        raise PolyauditError(f"{label} is not a polyaudit.report/1 document ({errors[0]}): "
                             "regenerate it with polyaudit")


class _BadNumber(ValueError):
    """A JSON number a report never holds: NaN, +-Infinity, a float beyond float64, a 300-digit int."""


_MAX_INT_DIGITS = 300  # float(int) overflows past ~1e308; a report's integers are seeds and counts


def _no_constant(name: str) -> Any:
    raise _BadNumber(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadNumber(text if len(text) <= 24 else text[:20] + "...")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise _BadNumber(f"{text[:12]}... ({len(text.lstrip('-'))} digits)")
    return int(text)


def parse_json(text: str) -> Any:
    """Strict JSON as polyaudit writes it: no NaN / Infinity literals, no number that overflows a
    float64 (json would read 1e999 as inf), no integer too long to convert."""
    return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float, parse_int=_bounded_int)


def load_report(path: str | Path, *, what: str = "report", require_integrity: bool = False) -> dict[str, Any]:
    """Read, parse, validate and integrity-check a JSON report. Every problem is one line that says
    what to do: unreadable, not JSON (e.g. truncated), not a report, edited after it was written."""
    p = Path(path)
    label = f"{what} {p}"
    advice = "regenerate it with --save-baseline" if what == "baseline" else "regenerate it with polyaudit"
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolyauditError(f"{label} does not exist: pass the path of a JSON report written by polyaudit") from None
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise PolyauditError(f"{label} cannot be read ({reason}): {advice}") from None
    try:
        doc = parse_json(text)
    except json.JSONDecodeError as e:
        raise PolyauditError(f"{label} is not valid JSON, truncated or corrupt ({e.msg} at line {e.lineno} "
                             f"column {e.colno}): {advice}") from None
    except _BadNumber as e:
        raise PolyauditError(f"{label} holds the number {e}, which no polyaudit report holds (NaN, infinite "
                             f"or out of range): {advice}") from None
    except RecursionError:
        raise PolyauditError(f"{label} is nested too deeply to be a polyaudit report: {advice}") from None
    if not isinstance(doc, dict) or doc.get("schema") != "polyaudit.report/1":
        found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise PolyauditError(f"{label} is not a polyaudit report (schema {found!r}, expected "
                             f"'polyaudit.report/1'): {advice}")
    validate(doc, label)
    record = doc.get(INTEGRITY_KEY)
    if record is None:
        if require_integrity:
            raise PolyauditError(f"{label} has no integrity checksum, so edits cannot be detected: {advice}")
    elif record.get("sha256") != payload_sha256(doc):
        raise PolyauditError(f"{label} was modified after polyaudit wrote it (its sha256 does not match "
                             f"its integrity record): {advice}")
    return doc


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
