"""Shared test helpers, and how the suite runs in parallel (``make test``: pytest-xdist, two workers)."""
import contextlib
import io
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

# Under pytest-xdist every worker, and every process it starts (lesson kernels, graders), uses one
# thread: two workers of two threads each on two cores would fight over them.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("COURSE_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def run_main(main, *argv):
    """A command's ``main(argv)`` (e.g. course.generate.main for ``python -m course.generate``) run
    in this interpreter, its output captured: for tests of a command's logic (exit status, messages,
    files), where a fresh process would only add a torch import. Each command keeps one test that
    runs it as a real process. Returns (returncode, stdout, stderr) as subprocess.run would."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(map(str, argv)))
        except SystemExit as stop:  # argparse's usage errors
            code = stop.code
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def lesson_files():
    """Every lesson: notebooks/NN_*.md (and NNb_*.md, a lesson added between two), in order."""
    return sorted(NOTEBOOKS.glob("[0-9][0-9]*_*.md"))


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")


def pytest_configure(config):
    config.addinivalue_line("markers", "grader: runs the grader (these share one xdist worker, one after another)")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads xdist_group to group the tests
def pytest_collection_modifyitems(items):
    """Tests that run the grader run one after another on one worker: the grader's Guard restores any
    course file that changes while it grades, and two of these tests have a learner rewrite a check
    file on purpose - side by side, one test's learner would be blamed (or restored) in another."""
    for item in items:
        if item.get_closest_marker("grader"):
            item.add_marker(pytest.mark.xdist_group("grader"))
