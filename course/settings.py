"""The course's switches: fast mode and the number of CPU threads.

Lessons train small models. Set the environment variable ``COURSE_FAST=1`` and every lesson
shrinks its training and sampling to seconds, so that the tests can execute every lesson.
The book and a learner's own runs use the full settings unless told otherwise.

``COURSE_THREADS=N`` caps the CPU threads torch uses in every process that imports the course
(lessons, tests, the book's kernels): with several lessons executing side by side, N = cores /
jobs keeps them from fighting over the cores. Unset, torch's default (one thread per core) holds.

This is the only place that reads these variables; lessons call :func:`fast_mode` or :func:`pick`.
"""
import os

FAST_ENV = "COURSE_FAST"
THREADS_ENV = "COURSE_THREADS"


def apply_threads():
    """Set torch's intra-op thread count from ``COURSE_THREADS`` if it is set (torch is imported
    only then, so importing the course stays cheap); return the count set, or None."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{THREADS_ENV} must be a whole number >= 1; got {value!r}")
    import torch

    torch.set_num_threads(int(value))
    return int(value)


def fast_mode() -> bool:
    """True when ``COURSE_FAST`` is set to 1/true/yes (read at call time, not import time)."""
    return os.environ.get(FAST_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def pick(full, fast):
    """Return ``fast`` in fast mode and ``full`` otherwise, e.g. ``steps = pick(4096, 200)``."""
    return fast if fast_mode() else full
