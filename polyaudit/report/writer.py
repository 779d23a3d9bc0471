"""Writing the run's reports: --json PATH, and reports/<model>/<timestamp>.{json,md}."""

from __future__ import annotations

import re
from typing import Any

from polyaudit.report.document import build_document, dumps, git_commit, versions
from polyaudit.report.io import atomic_write_text
from polyaudit.report.markdown import render_markdown
from polyaudit.report.terminal import render_table


def run_info(config: Any, recorder: Any) -> dict[str, Any]:
    from polyaudit.plugin import RUNTIME

    opts = config.stash[RUNTIME].options
    return {
        "created": recorder.created,
        "models": list(opts.models),
        "seed": opts.seed,
        "profile": opts.profile.name,
        "device": opts.device,
        "dtype": opts.dtype or "checkpoint",
        "versions": versions(),
        "git_commit": git_commit(config.rootpath),
    }


def _folder_name(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("_") or "model"


def write_reports(config: Any, recorder: Any) -> None:
    from polyaudit.plugin import RUNTIME

    opts = config.stash[RUNTIME].options
    info = run_info(config, recorder)
    targets: list[tuple[str, str]] = []
    if opts.json_path:
        targets.append((opts.json_path, dumps(build_document(recorder.rows, info))))
    if opts.report_dir:
        base = config.invocation_params.dir / opts.report_dir
        for model in dict.fromkeys(r["model"] for r in recorder.rows):
            rows = [r for r in recorder.rows if r["model"] == model]
            doc = build_document(rows, info)
            stem = base / _folder_name(model) / info["created"]
            targets.append((f"{stem}.json", dumps(doc)))
            targets.append((f"{stem}.md", render_markdown(doc)))
    for path, text in targets:
        try:
            recorder.written.append(str(atomic_write_text(path, text)))
        except OSError as e:
            recorder.problems.append(f"nothing written to {path}: {e.strerror or e}")


def terminal_text(config: Any, recorder: Any) -> str:
    doc = build_document(recorder.rows, run_info(config, recorder))
    tw = config.get_terminal_writer()
    return render_table(doc, width=tw.fullwidth, color=tw.hasmarkup)
