"""The `claim` marker, read in one place.

    @pytest.mark.claim(c4.SPEC, check="alpha-depth")

Its argument is the claim's `ClaimSpec` (or the id of a claim polyaudit ships); `check` names one of
the spec's checks (default: its first). Everything the plugin needs to know about a claim test (its
id, version, test-id name, statistic, sites, probe, minimum samples) comes from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from polyaudit.claimspec import Check, ClaimSpec


@dataclass(frozen=True)
class ClaimMarker:
    spec: ClaimSpec
    check: Check


def read_marker(marker: Any, where: str = "") -> ClaimMarker:
    """The spec and check a `claim` marker names; a malformed marker is one UsageError line."""
    spec = marker.args[0] if marker.args else marker.kwargs.get("spec")
    if isinstance(spec, str):
        from polyaudit.analyses.catalog import CLAIMS

        spec = CLAIMS.get(spec, spec)
    if not isinstance(spec, ClaimSpec):
        raise pytest.UsageError(f"{where}: the claim marker needs a ClaimSpec (or the id of a claim polyaudit "
                                f"ships), got {spec!r}; write @pytest.mark.claim(SPEC, check=NAME)")
    name = marker.kwargs.get("check") or (marker.args[1] if len(marker.args) > 1 else spec.checks[0].name)
    try:
        return ClaimMarker(spec, spec.check(str(name)))
    except KeyError as e:
        raise pytest.UsageError(f"{where}: {e.args[0]}") from None


def claim_of(item: pytest.Item) -> ClaimMarker | None:
    """The claim a test item checks, or None for a test without a `claim` marker."""
    marker = item.get_closest_marker("claim")
    return None if marker is None else read_marker(marker, item.nodeid)


def claim_of_function(metafunc: pytest.Metafunc) -> ClaimMarker | None:
    """The claim a test function checks, at collection (`pytest_generate_tests`), or None."""
    marker = metafunc.definition.get_closest_marker("claim")
    return None if marker is None else read_marker(marker, metafunc.definition.nodeid)
