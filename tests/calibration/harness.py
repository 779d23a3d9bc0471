"""The calibration harness: every claim judged against the nulls that could fool it, its power on
planted effects, and the coverage of its intervals on subjects whose truth is known.

A `Setting` builds a subject from a seed and runs the claim's own analysis (the function its file
in claims/ calls), the framework's adjustment (`SPEC.adjust`: p_adj and the simultaneous
interval) and the real `verdict.decide`. The seed varies both the subject and the audit's draws.

- null: a claim PASSes when ANY row the setting speaks for PASSes (what a user would read as "the
  property holds"). The null holds when the false-PASS rate is at most 5% AND the upper end of its
  95% Clopper-Pearson interval is at most 12%, over at least 60 seeds (so at most 2 of 60).
- planted: the claim PASSes when EVERY row the setting speaks for PASSes; power at least 90%.
- coverage: the rows' 95% intervals (`details.ci_95`, the unadjusted one) contain the setting's
  known truth in at least 90% of seeds.
A known miscalibration is a `finding`: its test is a strict xfail that names it.

Case modules (one per group of claims): cases_c1.py, cases_c2c3.py, cases_coding.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from polyaudit.profiles import PROFILES, Profile
from polyaudit.serial import stable_int
from polyaudit.stats import clopper_pearson
from polyaudit.verdict import Evidence, Status, decide

MIN_NULL_SEEDS, MIN_POWER_SEEDS, MIN_COVERAGE_SEEDS = 60, 30, 60
MAX_FALSE_PASS, MAX_CP_UPPER = 0.05, 0.12
MIN_POWER, MIN_COVERAGE = 0.90, 0.90

Rows = dict[str, Evidence]
Build = Callable[[int, Profile, str], Rows]  # (seed, profile, correction) -> adjusted rows


def audit_rng(seed: int, *keys: object) -> np.random.Generator:
    """The generator `--seed=seed` gives a claim for these keys (`Runtime.rng`)."""
    return np.random.default_rng([seed, stable_int(*keys)])


@dataclass(frozen=True)
class Setting:
    claim: str  # C1 .. C6, "C5 family", "C5 single"
    kind: Literal["null", "planted", "coverage"]
    name: str
    build: Build = field(repr=False)
    rows: tuple[str, ...] | None = None  # the rows this setting speaks for (None: every row)
    profile: str = "quick"
    seeds: int = MIN_NULL_SEEDS
    truth: Mapping[str, float] | None = None  # coverage: the true effect of each row it speaks for
    finding: str | None = None  # a known miscalibration: the enforcing test is a strict xfail
    what: str = ""  # one line for the table: what the subject is

    @property
    def id(self) -> str:
        return f"{self.claim}-{self.kind}-{self.name}".replace(" ", "-")


@dataclass
class Tally:
    setting: Setting
    seeds: list[int]
    hits: list[int]  # seeds where the claim PASSed (null, planted) or every interval covered (coverage)
    rows: list[Rows]

    @property
    def rate(self) -> float:
        return len(self.hits) / len(self.seeds)

    @property
    def cp(self) -> tuple[float, float]:
        return clopper_pearson(len(self.hits), len(self.seeds))

    def statuses(self) -> list[dict[str, Status]]:
        alpha = PROFILES[self.setting.profile].alpha
        return [{k: decide(ev, alpha).status for k, ev in r.items()} for r in self.rows]


def keys_of(setting: Setting, rows: Rows) -> Sequence[str]:
    return setting.rows or tuple(rows)


def hit(setting: Setting, rows: Rows) -> bool:
    alpha = PROFILES[setting.profile].alpha
    keys = keys_of(setting, rows)
    if setting.kind == "coverage":
        assert setting.truth is not None
        return all(_covers(rows[k], setting.truth[k]) for k in keys)
    passed = [decide(rows[k], alpha).status is Status.PASS for k in keys]
    return any(passed) if setting.kind == "null" else all(passed)


def _covers(ev: Evidence, truth: float) -> bool:
    if ev.error or ev.skip:
        return False
    lo, hi = ev.details.get("ci_95", ev.ci)
    return bool(lo <= truth <= hi)


def tally(setting: Setting, seeds: Sequence[int] | None = None, correction: str = "holm") -> Tally:
    profile = PROFILES[setting.profile]
    seeds = list(range(setting.seeds)) if seeds is None else list(seeds)
    out = Tally(setting, seeds, [], [])
    for seed in seeds:
        rows = setting.build(seed, profile, correction)
        out.rows.append(rows)
        if hit(setting, rows):
            out.hits.append(seed)
    return out


def verdict_of(t: Tally) -> tuple[bool, str]:
    """(holds, one line): the setting's rule applied to its tally."""
    k, n = len(t.hits), len(t.seeds)
    lo, hi = t.cp
    s = t.setting
    if s.kind == "null":
        ok = n >= MIN_NULL_SEEDS and t.rate <= MAX_FALSE_PASS and hi <= MAX_CP_UPPER
        return ok, f"{k}/{n} false PASS ({t.rate:.1%}, 95% CI [{lo:.1%}, {hi:.1%}]; rule <= 5%, upper <= 12%)"
    if s.kind == "planted":
        ok = n >= MIN_POWER_SEEDS and t.rate >= MIN_POWER
        return ok, f"{k}/{n} PASS ({t.rate:.1%}, 95% CI [{lo:.1%}, {hi:.1%}]; rule >= 90%)"
    ok = n >= MIN_COVERAGE_SEEDS and t.rate >= MIN_COVERAGE
    return ok, f"{k}/{n} covered ({t.rate:.1%}, 95% CI [{lo:.1%}, {hi:.1%}]; rule >= 90%)"
