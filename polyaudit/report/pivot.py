"""Side-by-side layout of a multi-model run: one line per claim x site (model-independent key), one
column per model. Shared by the Markdown, HTML and terminal renderers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from polyaudit.report.baseline import row_key

Row = Mapping[str, Any]


@dataclass
class Line:
    key: str
    claim: str
    claim_version: Any
    site: str
    statistic: str
    cells: dict[str, Row] = field(default_factory=dict)  # model -> row


def models_of(rows: Sequence[Row]) -> list[str]:
    return list(dict.fromkeys(str(r.get("model")) for r in rows))


def pivot(rows: Sequence[Row]) -> list[Line]:
    lines: dict[str, Line] = {}
    for r in rows:
        key = row_key(r)
        line = lines.get(key)
        if line is None:
            line = lines[key] = Line(key, str(r.get("claim")), r.get("claim_version"), str(r.get("site")),
                                     str(r.get("statistic")))
        line.cells[str(r.get("model"))] = r
    return list(lines.values())


def baseline_text(row: Row) -> str:
    """The row against its baseline: `ok (drop 0.01)`, `REGRESSED: PASS -> FAIL; drop 0.6 [0.4, 0.8]
    > tol 0.1`, `new (no baseline row)`, or empty when the run had no baseline."""
    from polyaudit.report.format import fmt_ci, fmt_num

    diff = row.get("baseline")
    if not isinstance(diff, Mapping):
        return ""
    status = diff.get("status")
    if status == "new":
        return "new (no baseline row)"
    drop = diff.get("drop")
    drop_txt = "" if drop is None else f"drop {fmt_num(drop)}"
    if status != "regressed":
        return f"ok ({drop_txt})" if drop_txt else "ok"
    parts = []
    if "verdict" in (diff.get("reasons") or []):
        parts.append(f"{diff.get('base_verdict')} -> {row.get('verdict')}")
    if "effect" in (diff.get("reasons") or []):
        parts.append(f"{drop_txt} {fmt_ci(diff.get('drop_ci'))} > tol {fmt_num(diff.get('tolerance'))}")
    elif drop_txt:
        parts.append(drop_txt)
    return "REGRESSED: " + "; ".join(parts)


def render_side_by_side(doc: Mapping[str, Any], *, width: int = 80, color: bool = False) -> str:
    """The terminal's side-by-side table of a multi-model run (after the long table), at most 80
    columns: short sites and numbers as in the long table. Where the models do not fit side by side,
    one line says where to see them (the Markdown and HTML reports always show them)."""
    import io

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from polyaudit.report.terminal import WIDTH, _num, short_site

    rows = doc.get("rows", [])
    models = models_of(rows)
    short = {"INCONCLUSIVE": "INCONC", "SKIPPED": "SKIP"}
    style = {"PASS": "green", "FAIL": "red", "INCONCLUSIVE": "yellow", "ERROR": "magenta", "SKIPPED": "dim"}

    def render(color: bool, width: int = WIDTH) -> str:
        buf = io.StringIO()
        console = Console(file=buf, width=width, force_terminal=color, color_system="standard" if color else None,
                          highlight=False, soft_wrap=False)
        table = Table(title="polyaudit side by side", expand=False, box=None, pad_edge=False)
        for col in ("claim", "site", *models):
            table.add_column(escape(col), no_wrap=True)
        for line in pivot(rows):
            cells = [escape(f"{line.claim}"), escape(short_site(line.site))]
            for m in models:
                r = line.cells.get(m)
                if r is None:
                    cells.append("-")
                    continue
                v = str(r.get("verdict"))
                ci = r.get("ci") or [None, None]
                cells.append(escape(f"{_num(r.get('effect'))} [{_num(ci[0])}, {_num(ci[1])}] ")
                             + f"[{style.get(v, 'bold')}]{escape(short.get(v, v))}[/]")
            table.add_row(*cells)
        console.print(table)
        return buf.getvalue()

    natural = render(False, width=10_000)  # unconstrained: does it fit without truncating a cell?
    if max((len(line.rstrip()) for line in natural.splitlines()), default=0) > WIDTH:
        return (f"polyaudit side by side: {len(models)} models do not fit 80 columns; see the Markdown or HTML "
                "report\n")
    return render(color)
