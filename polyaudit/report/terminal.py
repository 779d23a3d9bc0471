"""The rich table printed at the end of a pytest run."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from polyaudit.report.format import fmt_ci, fmt_num, fmt_p

_STYLE = {"PASS": "bold green", "FAIL": "bold red", "INCONCLUSIVE": "bold yellow",
          "ERROR": "bold magenta", "SKIPPED": "dim"}


def render_table(doc: Mapping[str, Any], *, width: int = 120, color: bool = False) -> str:
    """Header (models with revision/hash, probes, seed, profile, device, versions) and one row per
    claim x model x site."""
    from rich.console import Console
    from rich.table import Table

    buf = io.StringIO()
    console = Console(file=buf, width=max(width, 150), force_terminal=color, color_system="standard" if color else None,
                      highlight=False, soft_wrap=False)
    v = doc.get("versions", {})
    for m in doc.get("models", []):
        rev = m.get("revision") or "-"
        sha = (m.get("sha256") or "-")[:12]
        console.print(f"[bold]model[/bold] {m.get('spec')}  revision {rev}  sha256 {sha}  "
                      f"({m.get('family', '?')}, {m.get('n_layers', '?')} layers, {m.get('dtype', '?')})")
    for p in doc.get("probes", []):
        console.print(f"[bold]probe[/bold] {p.get('name')}  {p.get('n_samples')} samples  sha256 {(p.get('sha256') or '-')[:12]}")
    console.print(
        f"[bold]seed[/bold] {doc.get('seed')}  [bold]profile[/bold] {doc.get('profile')}  "
        f"[bold]correction[/bold] {doc.get('correction') or 'holm'}  [bold]device[/bold] {doc.get('device')}  [bold]versions[/bold] polyaudit {v.get('polyaudit')}, "
        f"torch {v.get('torch')}, transformers {v.get('transformers')}, python {v.get('python')}"
    )
    table = Table(title="polyaudit verdicts", show_lines=False, expand=False)
    for col, kw in (("claim", {}), ("model", {}), ("site", {}), ("statistic", {}),
                    ("effect [95% CI]", {"justify": "right"}), ("p (adj)", {"justify": "right"}),
                    ("n", {"justify": "right"}), ("verdict", {})):
        table.add_column(col, overflow="fold", no_wrap=col in ("claim", "effect [95% CI]", "p (adj)", "verdict"),
                         **kw)  # type: ignore[arg-type]
    for r in doc.get("rows", []):
        verdict = str(r.get("verdict"))
        table.add_row(
            f"{r.get('claim')} v{r.get('claim_version')}", str(r.get("model")), str(r.get("site")),
            str(r.get("statistic")), f"{fmt_num(r.get('effect'))} {fmt_ci(r.get('ci'))}",
            fmt_p(r.get("p_adj")), str(r.get("n")), f"[{_STYLE.get(verdict, '')}]{verdict}[/]",
        )
    console.print(table)
    summary = ", ".join(f"{n} {k}" for k, n in doc.get("summary", {}).items())
    console.print(f"verdicts: {summary or 'none'}")
    return buf.getvalue()
