"""Number formatting shared by the terminal table, the Markdown and the HTML report."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def fmt_num(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    try:
        f = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(f):
        return "-"
    return f"{f:.{digits}g}" if abs(f) >= 1e-3 or f == 0 else f"{f:.2e}"


def fmt_ci(ci: Sequence[Any] | None) -> str:
    if not ci or len(ci) != 2 or ci[0] is None or ci[1] is None:
        return "[-]"
    return f"[{fmt_num(ci[0])}, {fmt_num(ci[1])}]"


def fmt_p(p: Any) -> str:
    if p is None:
        return "-"
    f = float(p)
    if not math.isfinite(f):
        return "-"
    return "<0.001" if f < 1e-3 else f"{f:.3f}"


def fmt_control(row: Mapping[str, Any]) -> str:
    """The control column: the twin's effect and the row's origin, e.g. `0.02 -> learned`."""
    control = row.get("control")
    if not isinstance(control, Mapping):
        return "-"
    origin = row.get("origin") or str(control.get("verdict", "")).lower()
    return f"{fmt_num(control.get('effect'))} -> {origin}"
