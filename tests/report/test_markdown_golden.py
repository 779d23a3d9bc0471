"""Golden tests for the Markdown layout (single model, side by side, against a baseline).

The golden files live in tests/report/golden/. After an intended layout change, regenerate them with
`POLYAUDIT_REGOLD=1 python -m pytest tests/report/test_markdown_golden.py` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from polyaudit.report.baseline import row_key
from polyaudit.report.document import build_document
from polyaudit.report.markdown import render_markdown

GOLDEN = Path(__file__).with_name("golden")
RUN = {"created": "20260101T000000Z", "seed": 0, "profile": "quick", "device": "cpu", "dtype": "checkpoint",
       "versions": {"polyaudit": "0.1.0", "python": "3.11.7"}, "git_commit": "0" * 40}


def _row(model: str, site: str, effect: float | None, ci: tuple[Any, Any], verdict: str, *,
         claim: str = "C4", notes: str = "", baseline: dict[str, Any] | None = None) -> dict[str, Any]:
    row = {"claim": claim, "claim_version": 1, "test_id": f"{claim}-alpha-depth[{model}:{site}]", "model": model,
           "site": site, "statistic": "spearman(alpha, layer)", "effect": effect, "ci": list(ci),
           "p": 0.0004, "p_adj": 0.0008, "n": 400, "verdict": verdict, "notes": notes, "details": {},
           "provenance": {"model": {"spec": model, "revision": None, "sha256": "ab" * 32},
                          "probe": {"name": "digits", "n_samples": 400, "sha256": "cd" * 32}}}
    if baseline is not None:
        row["baseline"] = baseline
    return row


def _docs() -> dict[str, dict[str, Any]]:
    single = [_row("gpt2", "resid", -0.83, (-0.95, -0.6), "PASS", notes="fit ranks 5-200 of 400"),
              _row("gpt2", "mlp_pre", 0.12, (-0.2, 0.41), "INCONCLUSIVE"),
              _row("gpt2", "attn|out", None, (None, None), "ERROR", claim="C1", notes="NaN activations")]
    multi = [*single[:2], _row("ckpt", "resid", -0.5, (-0.7, -0.31), "PASS"), _row("ckpt", "mlp_pre", 0.45, (0.2, 0.66), "FAIL")]
    ok = {"key": "C4-alpha-depth[resid]", "status": "ok", "reasons": [], "drop": 0.01, "method": "paired",
          "tolerance": 0.1, "base_verdict": "PASS"}
    reg = {"key": "C4-alpha-depth[mlp_pre]", "status": "regressed", "reasons": ["verdict", "effect"], "drop": 0.35,
           "drop_ci": [0.21, 0.49], "method": "paired", "tolerance": 0.1, "base_verdict": "PASS"}
    vs = [_row("ckpt", "resid", -0.82, (-0.94, -0.6), "PASS", baseline=ok),
          _row("ckpt", "mlp_pre", 0.1, (-0.2, 0.4), "INCONCLUSIVE", baseline=reg)]
    base_run = {**RUN, "baseline": {"path": "/ci/baselines/gpt2.json", "sha256": "ef" * 32,
                                    "tolerances": {"default": 0.1, "C4": 0.15}, "missing": ["C1-purity[mlp_pre]"]}}
    return {"single": build_document(single, RUN), "multi": build_document(multi, RUN),
            "baseline": build_document(vs, base_run)}


@pytest.mark.parametrize("name", ["single", "multi", "baseline"])
def test_markdown_matches_golden(name: str) -> None:
    text = render_markdown(_docs()[name])
    path = GOLDEN / f"{name}.md"
    if os.environ.get("POLYAUDIT_REGOLD"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def test_markdown_tables_are_well_formed() -> None:
    for doc in _docs().values():
        table = [ln for ln in render_markdown(doc).splitlines() if ln.startswith("|")]
        widths = {ln.replace("\\|", "").count("|") for ln in table}
        assert len(widths) == 1, table  # every line has the header's number of cells
        lines = len(doc["rows"]) if len(doc["models"]) == 1 else len({row_key(r) for r in doc["rows"]})
        assert len(table) == lines + 2  # header, separator, one line per row (per claim x site side by side)


def test_markdown_is_short_enough_for_a_pr_comment() -> None:
    rows = [_row(f"model{m}", f"site{i}", 0.5, (0.2, 0.8), "PASS") for m in range(2) for i in range(60)]
    text = render_markdown(build_document(rows, RUN))
    assert len(text) < 65536  # GitHub's comment limit
