"""Self-contained HTML report: summary table with verdict colours at the top, plots (PNG embedded as
data: URIs), notes, provenance at the bottom. No external resource of any kind, so it opens offline
and can be attached to a model release as one file.

A tiny inline script counts the plots the browser decoded into `<body data-plots-rendered>` (next to
`data-plots-expected`), so a headless browser can check the report renders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from polyaudit.report.format import fmt_ci, fmt_control, fmt_num, fmt_p
from polyaudit.report.pivot import baseline_text, models_of, pivot
from polyaudit.report.plots import Plot

Row = Mapping[str, Any]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;
 padding:0 1rem;color:#1b1f24;line-height:1.4}
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.v{font-weight:600;padding:.05rem .4rem;border-radius:.25rem;white-space:nowrap}
.v-PASS{background:#dafbe1;color:#116329}.v-FAIL{background:#ffebe9;color:#a40e26}
.v-INCONCLUSIVE{background:#fff8c5;color:#7d4e00}.v-ERROR{background:#fbefff;color:#8250df}
.v-SKIPPED{background:#eaeef2;color:#57606a}.reg{color:#a40e26;font-weight:600}
.grid{display:grid;gap:1rem;align-items:start}
figure.plot{margin:0;border:1px solid #d0d7de;border-radius:.4rem;padding:.5rem;max-width:760px}
figure.plot img{width:100%;height:auto}figcaption{font-size:.8rem;color:#57606a}
.muted{color:#57606a;font-size:.85rem}code{font-size:.85rem}
"""

_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.querySelectorAll("figure.plot img"));
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute("data-plots-rendered", String(ok.length));
});
"""


def _e(x: Any) -> str:
    return escape("-" if x is None else str(x))


def _verdict(v: Any) -> str:
    return f'<span class="v v-{_e(v)}">{_e(v)}</span>'


def _effect(r: Row) -> str:
    return f"{fmt_num(r.get('effect'))} {fmt_ci(r.get('ci'))}"


def _base_cell(r: Row) -> str:
    text = baseline_text(r)
    cls = ' class="reg"' if text.startswith("REGRESSED") else ""
    return f"<td{cls}>{_e(text)}</td>"


def _summary(rows: Sequence[Row], has_baseline: bool) -> str:
    models = models_of(rows)
    if len(models) <= 1:
        head = ["claim", "model", "site", "statistic", "effect [95% CI]", "p (adj)", "n", "verdict", "control -> origin"]
        head += ["vs baseline"] if has_baseline else []
        body = []
        for r in rows:
            cells = [f"<td>{_e(r.get('claim'))} v{_e(r.get('claim_version'))}</td>", f"<td>{_e(r.get('model'))}</td>",
                     f"<td>{_e(r.get('site'))}</td>", f"<td>{_e(r.get('statistic'))}</td>",
                     f'<td class="num">{_e(_effect(r))}</td>', f'<td class="num">{_e(fmt_p(r.get("p_adj")))}</td>',
                     f'<td class="num">{_e(r.get("n"))}</td>', f"<td>{_verdict(r.get('verdict'))}</td>",
                     f"<td>{_e(fmt_control(r))}</td>"]
            if has_baseline:
                cells.append(_base_cell(r))
            body.append(f'<tr id="row-{_e(r.get("test_id"))}">{"".join(cells)}</tr>')
    else:
        head = ["claim", "site", "statistic", *models]
        body = []
        for line in pivot(rows):
            cells = [f"<td>{_e(line.claim)} v{_e(line.claim_version)}</td>", f"<td>{_e(line.site)}</td>",
                     f"<td>{_e(line.statistic)}</td>"]
            for m in models:
                cell = line.cells.get(m)
                if cell is None:
                    cells.append("<td>-</td>")
                    continue
                r = cell
                extra = f'<br><span class="muted">{_e(baseline_text(r))}</span>' if has_baseline else ""
                cells.append(f'<td class="num">{_e(_effect(r))} {_verdict(r.get("verdict"))}'
                             f'<br><span class="muted">p(adj) {_e(fmt_p(r.get("p_adj")))}, n {_e(r.get("n"))}</span>{extra}</td>')
            body.append(f"<tr>{''.join(cells)}</tr>")
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    return f'<table id="summary-table"><thead><tr>{th}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _plots(rows: Sequence[Row], plots: Sequence[Plot]) -> tuple[str, int]:
    if not plots:
        return '<p class="muted">No claim in this report left plot data.</p>', 0
    models = models_of(rows)
    groups: dict[tuple[str, str, str], dict[str, Plot]] = {}
    for plot in plots:
        groups.setdefault((plot.claim, plot.kind, plot.title), {})[plot.model] = plot
    parts, n = [], 0
    last_claim = None
    cols = max(len(models), 1)
    for (claim, kind, _title), by_model in groups.items():
        if claim != last_claim:
            parts.append(f"<h3>{_e(claim)}</h3>")
            last_claim = claim
        figs = []
        for m in models:
            p = by_model.get(m)
            if p is None:
                figs.append("<div></div>")
                continue
            label = f"{p.title} — {m}"
            if p.png_b64 is None:
                figs.append(f'<figure class="plot-missing"><figcaption>{_e(label)}: plot unavailable '
                            f"({_e(p.problem)})</figcaption></figure>")
                continue
            n += 1
            figs.append(f'<figure class="plot" data-plot="{_e(claim)}:{_e(kind)}:{_e(m)}">'
                        f'<img alt="{_e(label)}" src="data:image/png;base64,{p.png_b64}">'
                        f"<figcaption><b>{_e(label)}</b>. {_e(p.caption)}</figcaption></figure>")
        parts.append(f'<div class="grid" data-kind="{_e(kind)}" style="grid-template-columns:repeat({cols},minmax(0,1fr))">'
                     + "".join(figs) + "</div>")
    return "".join(parts), n


def _notes(rows: Sequence[Row]) -> str:
    items = [f"<li><code>{_e(r.get('test_id'))}</code> <b>{_e(r.get('verdict'))}</b>: {_e(r.get('reason') or '')}"
             + (f" <span class='muted'>{_e(r.get('notes'))}</span>" if r.get("notes") else "") + "</li>"
             for r in rows if r.get("notes") or r.get("reason")]
    return f"<ul>{''.join(items)}</ul>" if items else '<p class="muted">No notes.</p>'


def _baseline(doc: Mapping[str, Any]) -> str:
    b = doc.get("baseline")
    if not isinstance(b, Mapping):
        return ""
    rows = doc.get("rows", [])
    regressed = [r for r in rows if (r.get("baseline") or {}).get("status") == "regressed"]
    tol = ", ".join(f"{k} {fmt_num(v)}" for k, v in (b.get("tolerances") or {}).items())
    missing = b.get("missing") or []
    miss = f"<p>Baseline rows this run did not produce: {_e(', '.join(missing))}</p>" if missing else ""
    return (f'<section id="baseline"><h2>Against the baseline</h2><p><code>{_e(b.get("path"))}</code> '
            f"(sha256 <code>{_e(str(b.get('sha256'))[:12])}</code>, created {_e(b.get('created'))}); "
            f"tolerances: {_e(tol)}. <b>{len(regressed)}</b> regressed of {len(rows)} rows.</p>{miss}</section>")


def _provenance(doc: Mapping[str, Any]) -> str:
    models = "".join(
        f"<tr><td><code>{_e(m.get('spec'))}</code></td><td>{_e(m.get('revision'))}</td><td><code>{_e(m.get('sha256'))}</code></td>"
        f"<td>{_e(m.get('family'))}</td><td>{_e(m.get('n_layers'))}</td><td>{_e(m.get('dtype'))}</td></tr>"
        for m in doc.get("models", []))
    probes = "".join(
        f"<tr><td><code>{_e(p.get('name'))}</code></td><td>{_e(p.get('n_samples'))}</td><td><code>{_e(p.get('sha256'))}</code></td></tr>"
        for p in doc.get("probes", []))
    versions = ", ".join(f"{k} {v}" for k, v in sorted((doc.get("versions") or {}).items()))
    claims = ", ".join(f"{k} v{v}" for k, v in sorted((doc.get("claim_versions") or {}).items()))
    integ = (doc.get("integrity") or {}).get("sha256")
    return (
        '<section id="provenance"><h2>Provenance</h2>'
        "<table><thead><tr><th>model spec</th><th>revision</th><th>weights sha256</th><th>family</th>"
        f"<th>layers</th><th>dtype</th></tr></thead><tbody>{models}</tbody></table>"
        "<table><thead><tr><th>probe</th><th>samples</th><th>sha256</th></tr></thead>"
        f"<tbody>{probes}</tbody></table>"
        f"<p>seed {_e(doc.get('seed'))}, profile {_e(doc.get('profile'))}, device {_e(doc.get('device'))}, "
        f"dtype {_e(doc.get('dtype'))}; claims {_e(claims)}; git commit <code>{_e(doc.get('git_commit'))}</code>; "
        f"created {_e(doc.get('created'))}; schema {_e(doc.get('schema'))}"
        + (f"; report sha256 <code>{_e(integ)}</code>" if integ else "")
        + f'</p><p class="muted">versions: {_e(versions)}</p></section>'
    )


def summary_table(doc: Mapping[str, Any]) -> str:
    """The summary table alone, styled (a notebook's rich display of an audit)."""
    rows = list(doc.get("rows", []))
    return f"<style>{_CSS}</style>{_summary(rows, isinstance(doc.get('baseline'), Mapping))}"


def render_html(doc: Mapping[str, Any], plots: Sequence[Plot] | None = None) -> str:
    """The report as one HTML page. `plots`: made already (e.g. for several reports of one run;
    those of models not in `doc` are left out); default: drawn from the rows."""
    from polyaudit.report.plots import make_plots

    rows = list(doc.get("rows", []))
    models = set(models_of(rows))
    plots = make_plots(rows) if plots is None else [p for p in plots if p.model in models]
    specs = ", ".join(str(m.get("spec")) for m in doc.get("models", [])) or "-"
    summary = ", ".join(f"{v} {k.lower()}" for k, v in (doc.get("summary") or {}).items()) or "no rows"
    plots_html, n_plots = _plots(rows, plots)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>polyaudit report: {_e(specs)}</title><style>{_CSS}</style></head>\n"
        f'<body data-plots-expected="{n_plots}" data-plots-rendered="0">'
        f"<header><h1>polyaudit report</h1><p>models <b>{_e(specs)}</b>; verdicts: {_e(summary)}</p></header>"
        f'<section id="summary"><h2>Summary</h2>{_summary(rows, isinstance(doc.get("baseline"), Mapping))}'
        '<p class="muted">A FAIL is a finding about the model, not a bug in the audit. INCONCLUSIVE: the 95% '
        "CI includes 0 (too few samples, or no effect).</p></section>"
        f"{_baseline(doc)}"
        f'<section id="plots"><h2>Plots</h2>{plots_html}</section>'
        f'<section id="notes"><h2>Notes</h2>{_notes(rows)}</section>'
        f"{_provenance(doc)}<script>{_SCRIPT}</script></body></html>\n"
    )
