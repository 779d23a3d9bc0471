"""One audit run: its options, the models under audit (subjects) with their probes and captures,
dropout families, and a memo shared by the claims. Used by the pytest plugin and the Python API."""
