"""Helpers shared by the test suite and scripts (no pytest imports here)."""
