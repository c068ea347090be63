"""Placement decisions: pure functions of (ModelSpec or size, Machine, settings)."""
