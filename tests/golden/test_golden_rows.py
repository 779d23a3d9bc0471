"""The audit's numbers are exactly the recorded ones (tests/golden/golden.py): a refactor moves no
number. A change that means to move them regenerates the rows explicitly
(`python -m tests.golden.golden record`) and says why in its commit."""

from __future__ import annotations

import pytest
from golden import CASES, dumps, path_of, run_case


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_rows_are_byte_identical_to_the_golden_rows(case, tmp_path):
    fresh = dumps(run_case(case, tmp_path))
    recorded = path_of(case).read_text()
    if fresh != recorded:
        import difflib

        diff = "".join(list(difflib.unified_diff(recorded.splitlines(True), fresh.splitlines(True),
                                                 "golden", "fresh", n=1))[:80])
        pytest.fail(f"{case}: report rows moved\n{diff}")
