"""The course's one switch: fast mode.

Lessons train small models. Set the environment variable ``COURSE_FAST=1`` and every lesson
shrinks its training and sampling to seconds, so that the tests can execute every lesson.
The book and a learner's own runs use the full settings unless told otherwise.

This is the only place that reads the variable; lessons call :func:`fast_mode` or :func:`pick`.
"""
import os

FAST_ENV = "COURSE_FAST"


def fast_mode() -> bool:
    """True when ``COURSE_FAST`` is set to 1/true/yes (read at call time, not import time)."""
    return os.environ.get(FAST_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def pick(full, fast):
    """Return ``fast`` in fast mode and ``full`` otherwise, e.g. ``steps = pick(4096, 200)``."""
    return fast if fast_mode() else full
