"""polyaudit: interpretability claims as tests.

Each prediction of the Polytope Lens (Black, Sharkey et al. 2022) and of the coding theory of
polysemanticity (Marshall & Kirchner 2024) is a parametrized pytest check that measures an effect
size with a confidence interval and gives a verdict. From Python: `polyaudit.audit(model)` and
`polyaudit.compare(base, new)` (see `polyaudit.api`); nothing heavy is imported until they are used.
"""

from __future__ import annotations

from typing import Any

from polyaudit.version import __version__

__all__ = ["AuditResult", "__version__", "audit", "compare"]


def __getattr__(name: str) -> Any:
    if name in ("audit", "compare", "AuditResult"):
        from polyaudit import api

        return getattr(api, name)
    raise AttributeError(f"module 'polyaudit' has no attribute {name!r}")
