"""Markdown report: the summary table and key numbers, short enough for a PR comment or a model
card section."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from polyaudit.report.format import fmt_ci, fmt_control, fmt_num, fmt_p

_ICON = {"PASS": "PASS", "FAIL": "**FAIL**", "INCONCLUSIVE": "_INCONCLUSIVE_",
         "ERROR": "**ERROR**", "SKIPPED": "skipped"}


def _cell(x: Any) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def _row_cells(r: Mapping[str, Any]) -> list[Any]:
    return [f"{r.get('claim')} v{r.get('claim_version')}", r.get("model"), r.get("site"),
            r.get("statistic"), f"{fmt_num(r.get('effect'))} {fmt_ci(r.get('ci'))}",
            fmt_p(r.get("p_adj")), r.get("n"), _ICON.get(str(r.get("verdict")), r.get("verdict")), fmt_control(r)]


def _table(doc: Mapping[str, Any]) -> list[str]:
    """One row per claim x model x site; with several models, one column per model (side by side).
    A run with a baseline gets a `vs baseline` column (or line in each model's cell)."""
    from polyaudit.report.pivot import baseline_text, models_of, pivot

    rows = doc.get("rows", [])
    has_base = isinstance(doc.get("baseline"), Mapping)
    models = models_of(rows)
    if len(models) <= 1:
        head = ["claim", "model", "site", "statistic", "effect [95% CI]", "p (adj)", "n", "verdict", "control -> origin"]
        head += ["vs baseline"] if has_base else []
        body = [_row_cells(r) + ([baseline_text(r) or "-"] if has_base else []) for r in rows]
    else:
        head = ["claim", "site", "statistic", *(f"`{m}`" for m in models)]
        body = []
        for line in pivot(rows):
            cells: list[Any] = [f"{line.claim} v{line.claim_version}", line.site, line.statistic]
            for m in models:
                r = line.cells.get(m)
                if r is None:
                    cells.append("-")
                    continue
                cell = f"{fmt_num(r.get('effect'))} {fmt_ci(r.get('ci'))} {_ICON.get(str(r.get('verdict')), r.get('verdict'))}"
                base = baseline_text(r) if has_base else ""
                cells.append(f"{cell}; {base}" if base else cell)
            body.append(cells)
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(_cell(c) for c in cells) + " |" for cells in body]
    return out


def _baseline_lines(doc: Mapping[str, Any]) -> list[str]:
    b = doc.get("baseline")
    if not isinstance(b, Mapping):
        return []
    rows = doc.get("rows", [])
    regressed = [r for r in rows if (r.get("baseline") or {}).get("status") == "regressed"]
    tol = ", ".join(f"{k} {fmt_num(v)}" for k, v in (b.get("tolerances") or {}).items())
    name = str(b.get("path", "?")).replace("\\", "/").rsplit("/", 1)[-1]
    line = (f"- baseline: `{name}` (sha256 `{str(b.get('sha256'))[:12]}`), tolerances {tol}: "
            + (f"**{len(regressed)} regressed** of {len(rows)} rows" if regressed else f"no regression in {len(rows)} rows"))
    missing = b.get("missing") or []
    return [line] + ([f"- not in this run: {', '.join(f'`{k}`' for k in missing)}"] if missing else [])


def _short_rev(rev: str) -> str:
    """A 40-hex commit hash shortened to 12 characters; any other revision name kept whole."""
    return rev[:12] if len(rev) == 40 and all(c in "0123456789abcdef" for c in rev) else rev


def render_markdown(doc: Mapping[str, Any]) -> str:
    models = ", ".join(
        f"`{m.get('spec')}`" + (f" @ `{_short_rev(str(m['revision']))}`" if m.get("revision") else "")
        + (f" (sha256 `{str(m.get('sha256'))[:12]}`)" if m.get("sha256") else "")
        + (f" (pooling: {m['pooling']})" if m.get("pooling") else "")
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
        *_baseline_lines(doc),
        "",
        *_table(doc),
    ]
    notes = [(r.get("test_id"), r.get("notes")) for r in doc.get("rows", []) if r.get("notes")]
    if notes:
        lines += ["", "<details><summary>notes</summary>", ""]
        lines += [f"- `{_cell(t)}`: {_cell(n)}" for t, n in notes]
        lines += ["", "</details>"]
    lines += ["", "A FAIL is a finding about the model, not a bug in the audit. "
              "INCONCLUSIVE: the 95% CI includes 0 (too few samples, or no effect).", ""]
    return "\n".join(lines)
