"""The audit's numbers are the recorded ones (tests/golden/golden.py: every string, integer and
verdict exactly, every float to float32 rounding): a refactor moves no number. A change that means to move them regenerates the rows explicitly
(`python -m tests.golden.golden record`) and says why in its commit."""

from __future__ import annotations

import json

import pytest
from golden import CASES, differences, dumps, path_of, run_case


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_rows_are_the_golden_rows(case, tmp_path):
    fresh = dumps(run_case(case, tmp_path))
    recorded = path_of(case).read_text()
    moved = differences(json.loads(recorded), json.loads(fresh))
    if moved:
        pytest.fail(f"{case}: report rows moved ({len(moved)} values)\n" + "\n".join(moved[:60]))


def test_float32_rounding_is_the_same_number_and_anything_more_is_not():
    row = {"effect": 0.25, "ci": [0.1, 0.4], "verdict": "PASS", "n": 12, "details": {"js": [5.09100917e-4, 3.0]}}
    assert differences(row, json.loads(json.dumps(row))) == []
    rounding = {**row, "details": {"js": [5.091009669e-4, 3.0]}}  # ~1e-7 relative: the CI run's departure
    assert differences(row, rounding) == []
    assert differences(row, {**row, "effect": 0.2500101}) == ["/effect: 0.25 -> 0.2500101"]
    assert differences(row, {**row, "verdict": "FAIL"}) and differences(row, {**row, "n": 13})
    assert differences(row, {**row, "ci": [0.1]}) and differences(row, {k: v for k, v in row.items() if k != "n"})


def test_arrays_in_details_are_compared_by_value():
    import numpy as np

    from polyaudit.serial import encode_array

    boot = np.linspace(-1, 1, 200)
    rec = {"boot": encode_array(boot)}
    assert differences(rec, {"boot": encode_array(boot * (1 + 1e-8))}) == []
    assert differences(rec, {"boot": encode_array(boot + 1e-4)}) == ["/boot: 200 array entries moved"]
    assert differences(rec, {"boot": encode_array(boot[:100])})
