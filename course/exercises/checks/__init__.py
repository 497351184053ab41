"""Checks (graders) of the exercises, one module per lesson."""
