"""The recorder: collects report rows from test reports. Registered as a plugin object and kept in
`config.stash`; rows arrive through `report.user_properties`, so it works on a pytest-xdist
controller too."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from polyaudit.plugin.state import row_of
from polyaudit.report.document import utc_stamp


@dataclass(eq=False)  # registered as a plugin object: must stay hashable
class Recorder:
    rows: list[dict[str, Any]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    written: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. what the cache cap evicted
    created: str = field(default_factory=utc_stamp)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        row = row_of(report)
        if row is not None and row["test_id"] not in self.seen:
            self.seen.add(row["test_id"])
            self.rows.append(row)
