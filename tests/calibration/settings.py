"""Every calibration setting, from the case modules (one per group of claims)."""

from __future__ import annotations

import cases_c1
import cases_c2c3
import cases_coding
from harness import Setting

SETTINGS: tuple[Setting, ...] = (*cases_c1.SETTINGS, *cases_c2c3.SETTINGS, *cases_coding.SETTINGS)
CLAIMS = ("C1", "C2", "C3", "C4", "C5 family", "C5 single", "C6")


def of_kind(kind: str) -> list[Setting]:
    return [s for s in SETTINGS if s.kind == kind]
