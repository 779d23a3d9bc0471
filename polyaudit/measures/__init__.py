"""Pure measures over numpy arrays (no torch, no I/O): spectra, spline codes, purity, actions."""
