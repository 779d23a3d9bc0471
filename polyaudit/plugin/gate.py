"""The baseline gate inside a pytest run: a plugin object (kept in `config.stash`, registered by the
polyaudit plugin) that

- loads `--baseline` at configure time (a tampered, truncated or schema-less file: one line, exit 4),
- after collection refuses a baseline measured with other claim versions or another probe,
- judges every row as its report is made: a regression turns the test into a failure ("REGRESSED")
  whose longrepr is the readable diff, and the diff travels inside the row (`row["baseline"]`), so it
  reaches the reports and survives pytest-xdist.

The rules themselves live in `polyaudit.report.baseline`.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from polyaudit.errors import PolyauditError
from polyaudit.plugin.state import ROW_KEY, row_of, runtime_of
from polyaudit.report.baseline import (
    Baseline,
    RowDiff,
    Tolerances,
    pair_models,
    parse_tolerances,
    read_pyproject,
)


def _pyproject(config: pytest.Config) -> Path | None:
    inipath = getattr(config, "inipath", None)
    if inipath is not None and Path(inipath).name == "pyproject.toml":
        return Path(inipath)
    candidate = Path(config.rootpath) / "pyproject.toml"
    return candidate if candidate.is_file() else None


@dataclass(eq=False)
class Gate:
    baseline: Baseline | None
    tolerances: Tolerances
    seed: int
    save_path: Path | None = None
    pairing: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: pytest.Config, seed: int) -> Gate:
        o = config.option
        where = _pyproject(config)
        try:
            tolerances = parse_tolerances(o.polyaudit_tolerance or (), read_pyproject(where), str(where or "pyproject.toml"))
            base_dir = Path(config.invocation_params.dir)
            baseline = Baseline.load(base_dir / o.polyaudit_baseline) if o.polyaudit_baseline else None
        except PolyauditError as e:
            raise pytest.UsageError(str(e)) from None
        save = Path(config.invocation_params.dir) / o.polyaudit_save_baseline if o.polyaudit_save_baseline else None
        if save is not None and not hasattr(config, "workerinput"):
            if save.is_dir():
                raise pytest.UsageError(f"--save-baseline {save} is a folder: give the path of a .json file")
            if save.exists() and not o.polyaudit_replace_baseline:
                raise pytest.UsageError(f"--save-baseline {save} already exists and is never overwritten "
                                        "silently: add --replace-baseline to replace it, or choose another path")
        return cls(baseline, tolerances, seed, save)

    # -- collection: refuse incomparable baselines up front -----------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config,
                                      items: list[pytest.Item]) -> Generator[None, None, None]:
        yield
        if self.baseline is None or config.option.collectonly:
            return
        # claim specs pull in scipy: only once a baseline is compared
        from polyaudit.plugin.marker import claim_of

        runtime = runtime_of(config)
        callspecs = [getattr(it, "callspec", None) for it in items]
        specs = list(dict.fromkeys(c.params["subject"] for c in callspecs if c is not None and "subject" in c.params))
        try:
            ids = [runtime.subject(s).id for s in specs]
            self.pairing = pair_models(self.baseline.models, ids)
            checked: set[tuple[str, str, Any]] = set()
            for it in items:
                marked = claim_of(it)
                callspec = getattr(it, "callspec", None)
                if marked is None or callspec is None or "subject" not in callspec.params:
                    continue
                claim, version, probe = marked.spec.id, marked.spec.version, marked.check.probe
                spec = callspec.params["subject"]
                if (spec, claim, probe) in checked:
                    continue
                checked.add((spec, claim, probe))
                subject = runtime.subject(spec)
                self.baseline.check_compatible(claim, version, subject.probe(probe).describe(),
                                               self.pairing.get(subject.id), runtime.options.control)
        except PolyauditError as e:
            raise pytest.UsageError(str(e)) from None

    # -- per test: judge the row -----------------------------------------------------------------

    def judge(self, row: dict[str, Any]) -> RowDiff | None:
        if self.baseline is None:
            return None
        if not self.pairing:
            self.pairing = pair_models(self.baseline.models, [str(row.get("model"))])
        return self.baseline.compare(row, self.pairing, self.seed, self.tolerances)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        report = yield
        if self.baseline is None or call.when != "call":
            return report
        props = list(report.user_properties)
        idx = next((i for i, (k, _) in enumerate(props) if k == ROW_KEY), None)
        if idx is None:
            return report
        value = props[idx][1]
        row = json.loads(value) if isinstance(value, str) else dict(value)
        diff = self.judge(row)
        if diff is None:
            return report
        row["baseline"] = diff.to_json()
        props[idx] = (ROW_KEY, json.dumps(row, sort_keys=True))
        report.user_properties = props
        if diff.regressed:
            text = diff.paragraph(self.baseline.label)
            if report.failed and isinstance(report.longrepr, str):
                report.longrepr = f"{report.longrepr}\n{text}"
            else:
                report.longrepr = text
            report.outcome = "failed"
        return report

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_teststatus(self, report: pytest.TestReport, config: pytest.Config) -> Any:
        if self.baseline is None or report.when != "call" or not report.failed:
            return None
        row = row_of(report)
        if row is not None and (row.get("baseline") or {}).get("status") == "regressed":
            return "failed", "R", ("REGRESSED", {"red": True})
        return None

    # -- end of the session ----------------------------------------------------------------------

    def describe(self, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
        if self.baseline is None:
            return None
        pairing = self.pairing or pair_models(self.baseline.models, list(dict.fromkeys(str(r.get("model")) for r in rows)))
        return self.baseline.describe(self.tolerances, self.baseline.missing(rows, pairing))

    def summary_lines(self, rows: list[dict[str, Any]]) -> list[str]:
        if self.baseline is None:
            return []
        diffs = [r.get("baseline") or {} for r in rows]
        regressed = [d.get("key") for d in diffs if d.get("status") == "regressed"]
        new = sum(1 for d in diffs if d.get("status") == "new")
        desc = self.describe(rows) or {}
        out = [f"polyaudit {self.baseline.label}: {len(rows) - new} rows compared, {len(regressed)} regressed"
               + (f" ({', '.join(map(str, regressed))})" if regressed else "") + f", {new} without a baseline row"]
        if desc.get("missing"):
            out.append(f"polyaudit {self.baseline.label}: not in this run: {', '.join(desc['missing'])}")
        return out

