"""The probe registry: one builder per kind declared in `polyaudit.probes.kinds`, clashes refused,
and every "valid probes" message and the `--probe` help derived from the one table."""

from __future__ import annotations

import pytest

from polyaudit.errors import PolyauditError
from polyaudit.probes import registry
from polyaudit.probes.kinds import PROBE_KINDS, probe_help


def test_every_declared_kind_has_one_builder() -> None:
    assert set(registry.BUILDERS) == set(PROBE_KINDS)
    assert all(spec in probe_help() for spec in PROBE_KINDS)


def test_a_kind_registered_twice_or_undeclared_is_refused() -> None:
    with pytest.raises(PolyauditError, match=r"'digits' is registered twice: the kinds are text:stdlib"):
        registry.register_probe("digits")(lambda *a: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(PolyauditError, match="'audio:speech' is not declared"):
        registry.register_probe("audio:speech")(lambda *a: None)  # type: ignore[arg-type,return-value]


def test_an_unknown_spec_lists_the_declared_kinds() -> None:
    with pytest.raises(PolyauditError) as err:
        registry._build("images:cifar", None, None, 0)  # type: ignore[arg-type]
    assert str(err.value) == f"unknown probe 'images:cifar'; valid probes: {', '.join(PROBE_KINDS)}"
