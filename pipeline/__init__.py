"""Shared plumbing and the runs that connect data/ → saves/ → predictions/ (train, predict, export)."""
