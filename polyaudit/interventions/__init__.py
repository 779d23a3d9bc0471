"""Everything that runs a model for a claim: downstream evaluators (C2, C3), exact walks, unit
dropout (C5), stimulus runs (C6), prefix caching, and what the Polytope Lens claims read."""
