"""Probe sets: inputs + optional labels + which positions to keep."""
