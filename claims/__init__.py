"""polyaudit's claims: one file per prediction of the Polytope Lens (C1-C3) and of the coding theory
of polysemanticity (C4-C6). Installed as `polyaudit.claims`, so an installed polyaudit audits a
checkpoint without a clone: `polyaudit run --model=...` (or `pytest --pyargs polyaudit.claims`)."""
