"""Execute every lesson top to bottom in fast mode; any error fails the test.

Each lesson runs in a fresh kernel with notebooks/ as its working directory, exactly as the
book build runs it, but with COURSE_FAST=1. Learners' exercise files are not touched: the
lessons run with a temporary copy of the notebooks folder's exercises/ (the stubs), so the
lessons fall back to the reference solutions as they do for a newcomer.
"""
import os
import shutil

import jupytext
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from conftest import NOTEBOOKS, lesson_files


@pytest.mark.parametrize("path", lesson_files(), ids=lambda p: p.stem)
def test_lesson_executes_in_fast_mode(path, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # run in a copy of notebooks/ so that a learner's own exercises/ folder is neither used nor changed
    work = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, work, ignore=shutil.ignore_patterns("exercises", "_build", "*.ipynb"))
    nb = jupytext.read(work / path.name)
    client = NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(work)}})
    try:
        client.execute()
    except CellExecutionError as err:
        pytest.fail(f"{path.name} failed in fast mode:\n{err}", pytrace=False)
    assert os.path.exists(work / "exercises") or "exercises.workspace" not in path.read_text()
