"""Writing the run's reports: --json/--md/--html PATH, --save-baseline FILE, and
reports/<model>/<timestamp>.{json,md,html} (with several models, also a side-by-side
reports/<model>+<model>/<timestamp>.* of the whole run). Every JSON report carries its integrity
checksum (see `report.load`), so any of them can serve as a baseline."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from polyaudit.plugin.state import GATE, OPTIONS
from polyaudit.report.document import build_document, dumps, git_commit, versions
from polyaudit.report.load import sign
from polyaudit.report.markdown import render_markdown
from polyaudit.report.terminal import render_table
from polyaudit.serial import atomic_write_text
from polyaudit.store.root import cache_root


def run_info(config: Any, recorder: Any) -> dict[str, Any]:
    opts = config.stash[OPTIONS]
    return {
        "created": recorder.created,
        "models": list(opts.models),
        "seed": opts.seed,
        "profile": opts.profile.name,
        "correction": opts.correction,
        "control": opts.control,
        "control_twins": opts.control_twins if opts.control != "none" else None,
        "device": opts.device,
        "dtype": opts.dtype or "checkpoint",
        "versions": versions(),
        "git_commit": git_commit(config.rootpath),
        "baseline": _gate_info(config, recorder),
    }


def _gate_info(config: Any, recorder: Any) -> dict[str, Any] | None:
    gate = config.stash.get(GATE, None)
    return None if gate is None else gate.describe(recorder.rows)


class _Html:
    """HTML renderer for the reports of one run: the plots are drawn once and shared."""

    def __init__(self, rows: list[dict[str, Any]], plot_cache: Path | None = None) -> None:
        self.rows = rows
        self.plot_cache = plot_cache  # where drawn plots are kept for the next run (None: nowhere)
        self.plots: list[Any] | None = None
        self.pages: dict[int, str] = {}

    def __call__(self, doc: dict[str, Any]) -> str:
        from polyaudit.report.html import render_html
        from polyaudit.report.plots import make_plots

        if self.plots is None:
            self.plots = make_plots(self.rows, cache=self.plot_cache)
        if id(doc) not in self.pages:
            self.pages[id(doc)] = render_html(doc, self.plots)
        return self.pages[id(doc)]


def _as_baseline(doc: dict[str, Any]) -> dict[str, Any]:
    """A saved baseline holds this run's own numbers, not its comparison with an older baseline."""
    out = {k: v for k, v in doc.items() if k != "baseline"}
    out["rows"] = [{k: v for k, v in r.items() if k != "baseline"} for r in doc.get("rows", [])]
    return sign(out)


def _folder_name(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+_-]+", "_", model_id).strip("_") or "model"


def write_reports(config: Any, recorder: Any) -> None:
    opts = config.stash[OPTIONS]
    info = run_info(config, recorder)
    targets: list[tuple[str, str | Callable[[], str]]] = []  # HTML is rendered last, when written
    whole = build_document(recorder.rows, info)
    _html = _Html(whole["rows"], cache_root(opts.cache_dir) / "plots" if opts.use_cache else None)
    here = config.invocation_params.dir
    if opts.json_path:
        targets.append((opts.json_path, dumps(sign(whole))))
    if config.option.polyaudit_md:
        targets.append((str(here / config.option.polyaudit_md), render_markdown(whole)))
    if config.option.polyaudit_html:
        targets.append((str(here / config.option.polyaudit_html), lambda: _html(whole)))
    if config.option.polyaudit_save_baseline:
        targets.append((str(here / config.option.polyaudit_save_baseline), dumps(_as_baseline(whole))))
    if opts.report_dir:
        base = here / opts.report_dir
        models = list(dict.fromkeys(r["model"] for r in recorder.rows))
        groups = [(m, [r for r in recorder.rows if r["model"] == m]) for m in models]
        if len(models) > 1:
            groups.append(("+".join(models), list(recorder.rows)))
        for name, rows in groups:
            doc = whole if len(rows) == len(recorder.rows) else build_document(rows, info)
            stem = base / _folder_name(name) / info["created"]
            targets.append((f"{stem}.json", dumps(sign(doc))))
            targets.append((f"{stem}.md", render_markdown(doc)))
            targets.append((f"{stem}.html", functools.partial(_html, doc)))
    targets.sort(key=lambda t: callable(t[1]))
    failed: dict[str, str] = {}  # path -> reason: reported in one line, not one per file
    for path, content in targets:
        text = content() if callable(content) else content
        try:
            recorder.written.append(str(atomic_write_text(path, text)))
        except OSError as e:
            failed[str(path)] = str(e.strerror or e)
    if failed:
        reasons = "; ".join(dict.fromkeys(failed.values()))
        recorder.problems.append(f"nothing written to {', '.join(failed)} ({reasons}): the verdicts above are "
                                 "this run's only record; pass a writable --report-dir / --json path")


def terminal_text(config: Any, recorder: Any) -> str:
    doc = build_document(recorder.rows, run_info(config, recorder))
    tw = config.get_terminal_writer()
    text = render_table(doc, width=tw.fullwidth, color=tw.hasmarkup)
    if len({r["model"] for r in recorder.rows}) > 1:
        from polyaudit.report.pivot import render_side_by_side

        text += render_side_by_side(doc, width=tw.fullwidth, color=tw.hasmarkup)
    gate = config.stash.get(GATE, None)
    lines = gate.summary_lines(recorder.rows) if gate is not None else []
    return text + "".join(f"{line}\n" for line in lines)
