"""Shared coding-theory helpers (polyaudit.analyses.coding): the design effect of grouped rows on a
spectrum, the effective number of samples, and fits over one rank range."""

from __future__ import annotations

import numpy as np
import pytest

from polyaudit.analyses.coding import design_effect, effective_samples
from polyaudit.errors import PolyauditError


def _grouped(n_groups: int, size: int, icc: float, rng: np.random.Generator, d: int = 12) -> np.ndarray:
    """Rows whose squared scores share a group factor: each group scales its rows by a common
    random amplitude (so the second moments, what an eigenvalue averages, are correlated)."""
    amp = np.repeat(np.exp(icc * rng.standard_normal(n_groups)), size)
    return amp[:, None] * rng.standard_normal((n_groups * size, d))


def test_single_row_groups_have_no_design_effect() -> None:
    x = np.random.default_rng(0).standard_normal((300, 8))
    assert design_effect(x, np.arange(300)) == 1.0
    assert design_effect(x, None) == 1.0
    assert effective_samples(300, 1.0, 300) == 300


def test_independent_rows_in_groups_have_a_design_effect_near_one() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2000, 10))
    assert design_effect(x, np.repeat(np.arange(100), 20)) == pytest.approx(1.0, abs=0.4)


def test_shared_group_amplitude_inflates_the_design_effect() -> None:
    """Groups of 20 rows with a common amplitude: each group is worth a few rows, not 20."""
    rng = np.random.default_rng(2)
    x = _grouped(100, 20, 0.8, rng)
    groups = np.repeat(np.arange(100), 20)
    deff = design_effect(x, groups)
    assert 3.0 < deff <= 20.0
    n_eff = effective_samples(2000, deff, 100)
    assert 100 <= n_eff < 700


def test_effective_samples_is_bounded_by_groups_and_rows() -> None:
    assert effective_samples(1000, 1e9, 40) == 40
    assert effective_samples(1000, 0.5, 40) == 1000


def test_design_effect_refuses_bad_shapes() -> None:
    with pytest.raises(PolyauditError):
        design_effect(np.zeros((5, 3)), np.zeros(4))
