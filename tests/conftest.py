"""Shared test helpers."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def lesson_files():
    """Every lesson: notebooks/NN_*.md (and NNb_*.md, a lesson added between two), in order."""
    return sorted(NOTEBOOKS.glob("[0-9][0-9]*_*.md"))


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
