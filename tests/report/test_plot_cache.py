"""The plot cache (`polyaudit.report.plots.make_plots(cache=...)`): a warm run's reports read the
plots its rows were drawn as, and anything a plot is drawn from draws it afresh."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from polyaudit.report import plots

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "rows" / "default.json"


def _rows() -> list[dict[str, Any]]:
    """Real C4 and C6 rows of the default audit (the golden rows), as a report holds them."""
    rows = json.loads(GOLDEN.read_text())
    out = [{**r, "test_id": t, "model": t.split("[")[1].split(":")[0] + ":" + t.split(":")[1]}
           for t, r in rows.items() if r["claim"] in ("C4", "C6") and r["verdict"] not in ("SKIPPED", "ERROR")]
    assert out
    return out


def _no_drawing(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    drawn: list[int] = []
    real = plots._png

    def counted(fig: Any) -> str:
        drawn.append(1)
        return real(fig)

    monkeypatch.setattr(plots, "_png", counted)
    return drawn


def test_an_unchanged_group_is_read_back_not_drawn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = _rows()
    first = plots.make_plots(rows, cache=tmp_path)
    assert first and all(p.png_b64 for p in first)
    drawn = _no_drawing(monkeypatch)
    warm = [{**r, "origin": "results cache", "nodeid": "elsewhere::test"} for r in rows]  # not drawn from
    assert plots.make_plots(warm, cache=tmp_path) == first
    assert drawn == []
    assert plots.make_plots(rows) == first  # without a cache: drawn, the same plots


def test_a_changed_row_or_an_unreadable_entry_is_drawn_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = _rows()
    first = plots.make_plots(rows, cache=tmp_path)
    drawn = _no_drawing(monkeypatch)
    moved = copy.deepcopy(rows)
    layers = moved[0]["details"]["layers"]
    layers[0]["alpha"] = layers[0]["alpha"] - 0.5
    again = plots.make_plots(moved, cache=tmp_path)
    assert drawn and again != first  # that group's plots were drawn from the new numbers
    n = len(drawn)
    for entry in tmp_path.glob("*.json"):
        entry.write_text("{not json")
    assert plots.make_plots(rows, cache=tmp_path) == first
    assert len(drawn) > n
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["claim"], r["model"]), []).append(r)
    for (claim, model), group in groups.items():  # the entries read were replaced
        assert json.loads((tmp_path / f"{plots.plot_key(claim, model, group)}.json").read_text())["plots"]


def test_an_unwritable_cache_costs_only_the_next_draw(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    rows = _rows()
    assert plots.make_plots(rows, cache=blocked / "plots") == plots.make_plots(rows)


def test_a_claim_that_declares_other_plots_is_drawn_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = _rows()
    first = plots.make_plots(rows, cache=tmp_path)
    real = plots.plotters_of
    monkeypatch.setattr(plots, "plotters_of", lambda claim: real(claim)[:1])  # a spec with fewer plots
    fewer = plots.make_plots(rows, cache=tmp_path)
    assert fewer == plots.make_plots(rows) and len(fewer) < len(first)
