"""The claims polyaudit ships, by id: each analysis module's `SPEC` (see `polyaudit.claimspec`)."""

from __future__ import annotations

from polyaudit.analyses import c1, c2, c3, c4, c5, c6
from polyaudit.claimspec import ClaimSpec

CLAIMS: dict[str, ClaimSpec] = {spec.id: spec for spec in (c1.SPEC, c2.SPEC, c3.SPEC, c4.SPEC, c5.SPEC, c6.SPEC)}
