"""Claim analyses: captured activations -> Evidence. Pure of pytest, so benchmarks and calibration
studies can call them on planted data; the files in claims/ collect, call these, and conclude."""
