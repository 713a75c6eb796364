"""Reliability suite: bad input, faults, corrupt data, determinism and numerics."""
