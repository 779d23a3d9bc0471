"""Power (issue 7, part 2): on a planted subject where the effect exists by construction, the claim
PASSes (every row the setting speaks for) in at least 90% of 20 seeds at the default profile. The
planted effects are the ones tests/claims_planted and tests/claims_coding already use, with the
seed varying the construction and the audit's random draws; C4's is an alpha step of 0.1 per layer.
The minimum detectable effects at the default sample sizes are in docs/claims.md
(`python -m tests.calibration.table`)."""

from __future__ import annotations

import pytest
from calibration_cases import MIN_POWER, N_POWER, POWER_PROFILE, Setting, settings, tally

from polyaudit.verdict import Status


@pytest.mark.slow
@pytest.mark.parametrize("setting", settings("planted"), ids=lambda s: s.id)
def test_claim_passes_on_its_planted_effect(setting: Setting) -> None:
    t = tally(setting, range(N_POWER), POWER_PROFILE)
    assert len(t.seeds) == 20
    statuses = t.statuses()
    missed = {seed: {k: v.value for k, v in st.items() if v is not Status.PASS}
              for seed, st in zip(t.seeds, statuses, strict=True) if seed not in t.passed}
    assert t.rate >= MIN_POWER, (
        f"{setting.claim} PASSed on {len(t.passed)} of {len(t.seeds)} planted seeds ({t.rate:.0%} < "
        f"{MIN_POWER:.0%}); misses: {missed}")
    for rows in t.rows:  # a PASS is backed by its CI: the effect sits inside it, on the predicted side
        for ev in rows.values():
            lo, hi = ev.ci
            assert lo <= ev.effect <= hi
