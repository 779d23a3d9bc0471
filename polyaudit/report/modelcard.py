"""A model-card section of an audit: Markdown with the verdict table, intervals, controls and
provenance, and `model-index` YAML entries for the card's metadata.

The hub's `model-index` has no field for an interval or a verdict: each row becomes a metric whose
`value` is the effect, whose `name` reads like a sentence (claim, site, verdict, 95% CI, control)
and whose `args` carry the same as data (ci, verdict, origin, control, probe, claim version), so a
reader of the card and a program reading its metadata see the same thing.

    polyaudit report RUN.json --model-card [--out CARD.md]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from polyaudit.report.format import fmt_ci, fmt_control, fmt_num, fmt_p


def _q(s: Any) -> str:
    """A YAML double-quoted scalar."""
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def _num(x: Any) -> str:
    return "null" if x is None else repr(float(x))


def model_index(doc: Mapping[str, Any]) -> str:
    """`model-index` YAML (the card's front matter): one result per probe, one metric per row."""
    rows = [r for r in doc.get("rows", []) if r.get("verdict") not in ("SKIPPED",)]
    model = doc.get("model") or {}
    name = str(model.get("spec") or "model")
    out = ["model-index:", f"- name: {_q(name)}", "  results:"]
    probes: dict[str, list[Mapping[str, Any]]] = {}
    names = {p.get("sha256"): p.get("name") for p in doc.get("probes", [])}
    for r in rows:
        probes.setdefault(str(names.get(r.get("probe_sha256")) or (doc.get("probe") or {}).get("name")), []).append(r)
    for probe, group in probes.items():
        out += ["  - task:", "      type: interpretability-audit", f"      name: {_q('polyaudit audit')}",
                "    dataset:", "      type: polyaudit-probe", f"      name: {_q(probe)}", "    metrics:"]
        for r in group:
            ci = r.get("ci") or [None, None]
            control = r.get("control") or {}
            label = (f"{r.get('claim')} {r.get('site')}: {r.get('verdict')}, 95% CI {fmt_ci(ci)}, "
                     f"p_adj {fmt_p(r.get('p_adj'))}" + (f", {r.get('origin')} vs {control.get('kind')} twin"
                                                          if r.get("origin") else ""))
            out += [f"    - type: {_q('polyaudit/' + str(r.get('test_id')))}", f"      name: {_q(label)}",
                    f"      value: {_num(r.get('effect'))}", "      verified: false", "      args:",
                    f"        statistic: {_q(r.get('statistic'))}", f"        ci: [{_num(ci[0])}, {_num(ci[1])}]",
                    f"        verdict: {r.get('verdict')}", f"        claim_version: {r.get('claim_version')}",
                    f"        probe: {_q(probe)}", f"        origin: {r.get('origin') or 'null'}",
                    f"        control_effect: {_num(control.get('effect'))}"]
    return "\n".join(out) + "\n"


def render_model_card(doc: Mapping[str, Any]) -> str:
    """The card section (Markdown), its `model-index` front matter first (copy it into the card's
    YAML header, the section into its body)."""
    rows = doc.get("rows", [])
    models = ", ".join(f"`{m.get('spec')}`" for m in doc.get("models", [])) or "-"
    v = doc.get("versions", {})
    lines = ["---", model_index(doc).rstrip(), "---", "", "## Interpretability audit (polyaudit)", "",
             f"Audited {models} with polyaudit {v.get('polyaudit', '?')} (profile `{doc.get('profile')}`, seed "
             f"{doc.get('seed')}, correction {doc.get('correction') or 'holm'}, control twin "
             f"`{doc.get('control') or 'none'}`). Each row is a prediction of the Polytope Lens (C1-C3; Black, "
             "Sharkey et al. 2022) or of the coding theory of polysemanticity (C4-C6; Marshall & Kirchner "
             "2024), measured with a 95% confidence interval (simultaneous across a claim's rows) and a verdict. "
             "A FAIL is a finding about the model; the control column says whether an effect is learned "
             "(the model exceeds its untrained twin), architectural (the twin shows it too) or absent.", "",
             "| claim | site | statistic | effect [95% CI] | p (adj) | verdict | control -> origin |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r.get('claim')} v{r.get('claim_version')}", r.get("site"), r.get("statistic"),
                 f"{fmt_num(r.get('effect'))} {fmt_ci(r.get('ci'))}", fmt_p(r.get("p_adj")), r.get("verdict"),
                 fmt_control(r)]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    probes = "; ".join(f"{p.get('name')} ({p.get('n_samples')} samples, sha256 {str(p.get('sha256'))[:12]})"
                       for p in doc.get("probes", []))
    shas = "; ".join(f"{m.get('spec')}: {str(m.get('sha256'))[:16]}" for m in doc.get("models", []))
    lines += ["", f"Probes: {probes or '-'}. Weights sha256: {shas or '-'}. Report schema {doc.get('schema')}, "
              f"created {doc.get('created')}, git commit {doc.get('git_commit') or '-'}."]
    return "\n".join(lines) + "\n"
