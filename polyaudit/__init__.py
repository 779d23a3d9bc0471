"""polyaudit: interpretability claims as tests.

Each prediction of the Polytope Lens (Black, Sharkey et al. 2022) and of the coding theory of
polysemanticity (Marshall & Kirchner 2024) is a parametrized pytest check that measures an effect
size with a confidence interval and gives a verdict. Heavy modules are imported lazily.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
