"""The verdict table printed at the end of a pytest run (and by `polyaudit report`): it fits 80
columns. Statistics are shown by their short names (the key a claim declares for them) and sites in
a shorthand (`blocks.3.mlp.pre` -> `L3.pre`); a legend under the table gives both in full."""

from __future__ import annotations

import io
import re
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from polyaudit.report.format import fmt_p

WIDTH = 80
_STYLE = {"PASS": "bold green", "FAIL": "bold red", "INCONCLUSIVE": "bold yellow",
          "ERROR": "bold magenta", "SKIPPED": "dim"}
_VERDICT = {"INCONCLUSIVE": "INCONC", "SKIPPED": "SKIP"}
_ORIGIN = {"learned": "learned", "architectural": "arch", "absent": "absent"}
# (column, width, right-aligned), one space between: 3 + 16 + 11 + 24 + 6 + 6 + 7 + 6 = 79
_COLUMNS = (("", 3, False), ("site", 16, False), ("stat", 11, False), ("effect [CI]", 24, True),
            ("p_adj", 6, True), ("verdict", 6, False), ("twin", 7, False))


def _num(x: Any) -> str:
    """Two significant digits, in at most 7 characters (`-0.094`, `1.1`, `-3.9e-3`, `120`)."""
    if not isinstance(x, (int, float)) or x != x or x in (float("inf"), float("-inf")):
        return "-"
    f = float(x)
    if f == 0 or 0.01 <= abs(f) < 100:
        return f"{f:.2g}"
    if abs(f) >= 100:
        return f"{f:.0f}" if abs(f) < 1e6 else f"{f:.1e}".replace("e+0", "e").replace("e+", "e")
    mant, exp = f"{f:.1e}".split("e")
    return f"{mant}e{int(exp)}"


def short_site(site: str) -> str:
    """`blocks.3.mlp.pre/direction` -> `L3.pre/direction`, `blocks.0.resid` -> `L0.resid`."""
    return re.sub(r"blocks\.(\d+)\.(?:mlp\.)?", r"L\1.", site)


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


def short_statistic(row: Mapping[str, Any]) -> str:
    """The key the row's claim declares for its statistic (e.g. `entropy-gap`), else the text."""
    from polyaudit.analyses.catalog import CLAIMS

    spec = CLAIMS.get(str(row.get("claim")))
    text = str(row.get("statistic"))
    if spec is not None:
        for s in spec.statistics:
            if s.text == text:
                return s.key
    return text


def _legend(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    stats: dict[str, str] = {}
    for r in rows:
        key = short_statistic(r)
        if key != r.get("statistic"):
            stats.setdefault(key, str(r.get("statistic")))
    lines = []
    if stats:
        text = "; ".join(f"{k} = {v}" for k, v in stats.items())
        lines += textwrap.wrap(f"stat: {text}", WIDTH, subsequent_indent="  ")
    if any(short_site(str(r.get("site"))) != r.get("site") for r in rows):
        lines += textwrap.wrap("site: Li.pre / Li.out / Li.resid = blocks.i.mlp.pre / blocks.i.mlp.out / "
                               "blocks.i.resid (layer i)", WIDTH, subsequent_indent="  ")
    lines += textwrap.wrap("effect [CI]: the claim's effect with its confidence interval (simultaneous across a "
                           "claim's rows); twin: learned (beyond its untrained twins' spread), arch (the twins show it too), "
                           "absent", WIDTH, subsequent_indent="  ")
    return lines


def _cells(r: Mapping[str, Any]) -> list[str]:
    verdict = str(r.get("verdict"))
    site = short_site(str(r.get("site")))
    ci = r.get("ci") or [None, None]
    effect = f"{_num(r.get('effect'))} [{_num(ci[0])}, {_num(ci[1])}]"
    return [f"{r.get('claim')}", site, short_statistic(r), effect, fmt_p(r.get("p_adj")),
            _VERDICT.get(verdict, verdict), _ORIGIN.get(str(r.get("origin")), "-")]


def render_table(doc: Mapping[str, Any], *, width: int = WIDTH, color: bool = False) -> str:
    """Header (models with revision/hash and a sentence encoder's pooling, probes, seed, profile,
    control, device, versions), one row per claim x model x site, and the legend; every line at
    most 80 columns."""
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, width=WIDTH, force_terminal=color, color_system="standard" if color else None,
                      highlight=False, soft_wrap=True)
    v = doc.get("versions", {})
    head = []
    for m in doc.get("models", []):
        head.append(f"model {m.get('spec')}  revision {m.get('revision') or '-'}  sha256 {(m.get('sha256') or '-')[:12]}"
                    f"  ({m.get('family', '?')}, {m.get('n_layers', '?')} layers, {m.get('dtype', '?')})"
                    + (f"  pooling: {m['pooling']}" if m.get("pooling") else ""))
    for p in doc.get("probes", []):
        head.append(f"probe {p.get('name')}  {p.get('n_samples')} samples  sha256 {(p.get('sha256') or '-')[:12]}"
                    + (f"  ({p['tokenization']})" if p.get("tokenization") else ""))
    head.append(f"seed {doc.get('seed')}  profile {doc.get('profile')}  correction {doc.get('correction') or 'holm'}"
                f"  control {doc.get('control') or 'none'}"
                f"{' x' + str(doc['control_twins']) if doc.get('control_twins') else ''}  device {doc.get('device')}")
    head.append(f"polyaudit {v.get('polyaudit')}, torch {v.get('torch')}, transformers {v.get('transformers')}, "
                f"python {v.get('python')}")
    for line in head:
        for part in textwrap.wrap(line, WIDTH, subsequent_indent="  ", break_on_hyphens=False):
            console.print(part, markup=False)
    rows = list(doc.get("rows", []))
    order = {m: i for i, m in enumerate(dict.fromkeys(r.get("model") for r in rows))}
    several = len(order) > 1
    rows.sort(key=lambda r: order[r.get("model")])  # stable: each model's rows together, in run order
    console.print("polyaudit verdicts".center(WIDTH).rstrip(), style="bold")
    console.print(" ".join(f"{c:>{w}}" if right else f"{c:<{w}}" for c, w, right in _COLUMNS).rstrip(), style="bold")
    console.print(" ".join("-" * w for _, w, _ in _COLUMNS))
    model = None
    for r in rows:
        if several and r.get("model") != model:  # rows of several models: one line names each model
            model = r.get("model")
            console.print(_fit(f"model {model}", WIDTH), markup=False, style="bold")
        cells = [_fit(c, w) for c, (_, w, _) in zip(_cells(r), _COLUMNS, strict=True)]
        text = " ".join(f"{c:>{w}}" if right else f"{c:<{w}}" for c, (_, w, right) in zip(cells, _COLUMNS,
                                                                                             strict=True))
        style = _STYLE.get(str(r.get("verdict")), "")
        line = text.rstrip()
        if color and style:
            start = sum(w + 1 for _, w, _ in _COLUMNS[:5])
            console.print(line[:start], end="", markup=False)
            console.print(line[start:start + 6], style=style, end="")
            console.print(line[start + 6:], markup=False)
        else:
            console.print(line, markup=False)
    summary = ", ".join(f"{n} {k}" for k, n in doc.get("summary", {}).items())
    console.print(f"verdicts: {summary or 'none'}", markup=False)
    for line in _legend(rows):
        console.print(line, markup=False, style="dim")
    return buf.getvalue()
