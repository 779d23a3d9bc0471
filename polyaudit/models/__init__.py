"""Load a model from a spec; adapters that name its sites (per architecture family)."""
