"""Markdown report: the summary table and key numbers, short enough for a PR comment or a model
card section."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from polyaudit.report.format import fmt_ci, fmt_num, fmt_p

_ICON = {"PASS": "PASS", "FAIL": "**FAIL**", "INCONCLUSIVE": "_INCONCLUSIVE_",
         "ERROR": "**ERROR**", "SKIPPED": "skipped"}


def _cell(x: Any) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def render_markdown(doc: Mapping[str, Any]) -> str:
    models = ", ".join(
        f"`{m.get('spec')}`" + (f" @ `{str(m['revision'])[:12]}`" if m.get("revision") else "")
        + (f" (sha256 `{str(m.get('sha256'))[:12]}`)" if m.get("sha256") else "")
        for m in doc.get("models", [])
    )
    probes = ", ".join(f"`{p.get('name')}` ({p.get('n_samples')} samples)" for p in doc.get("probes", []))
    summary = ", ".join(f"{v} {k.lower()}" for k, v in doc.get("summary", {}).items())
    lines = [
        "## polyaudit report",
        "",
        f"- models: {models or '-'}",
        f"- probes: {probes or '-'}",
        f"- profile `{doc.get('profile')}`, seed {doc.get('seed')}, device `{doc.get('device')}`, "
        f"polyaudit {doc.get('versions', {}).get('polyaudit', '?')}",
        f"- verdicts: {summary or 'no rows'}",
        "",
        "| claim | model | site | statistic | effect [95% CI] | p (adj) | n | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in doc.get("rows", []):
        ci = r.get("ci") or [None, None]
        lines.append(
            "| " + " | ".join(_cell(c) for c in (
                f"{r.get('claim')} v{r.get('claim_version')}", r.get("model"), r.get("site"),
                r.get("statistic"), f"{fmt_num(r.get('effect'))} {fmt_ci(ci)}",
                fmt_p(r.get("p_adj")), r.get("n"), _ICON.get(str(r.get("verdict")), r.get("verdict")),
            )) + " |"
        )
    notes = [(r.get("test_id"), r.get("notes")) for r in doc.get("rows", []) if r.get("notes")]
    if notes:
        lines += ["", "<details><summary>notes</summary>", ""]
        lines += [f"- `{_cell(t)}`: {_cell(n)}" for t, n in notes]
        lines += ["", "</details>"]
    lines += ["", "A FAIL is a finding about the model, not a bug in the audit. "
              "INCONCLUSIVE: the 95% CI includes 0 (too few samples, or no effect).", ""]
    return "\n".join(lines)
