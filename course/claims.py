"""Claims a lesson's prose makes about its own numbers, checked by the lesson itself.

A sentence such as "recall falls as w grows" is only as true as the run that printed the
numbers. Each lesson states such sentences through :func:`claim`, right after the cell that
computes them::

    claim(recall[-1] < recall[0], "recall falls as w grows", recall=recall)

In full mode (the book build) a false claim raises :class:`ClaimFailed`, with the sentence and
the numbers, and so fails the build. In fast mode (tiny training, used by the tests) the numbers
mean little: a false claim only prints a note saying it was not checked.
"""
from .settings import fast_mode


class ClaimFailed(AssertionError):
    """A sentence of a lesson that its own numbers do not support."""


class Verdict:
    """What :func:`claim` returns: true when the claim held. It displays as nothing in a
    notebook, so a cell that ends with a claim shows no stray ``True`` under it."""

    def __init__(self, held: bool):
        self.held = bool(held)

    def __bool__(self):
        return self.held

    def __repr__(self):
        return f"Verdict(held={self.held})"

    def _ipython_display_(self):  # IPython calls this instead of printing the repr
        pass


def _fmt(value):
    try:
        import torch

        if isinstance(value, torch.Tensor):
            value = value.tolist()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _has_nan(value):
    """True if ``value`` (a number, tensor, or list / tuple / dict of them) contains a NaN."""
    try:
        import torch

        if isinstance(value, torch.Tensor):
            return bool(torch.isnan(value).any()) if value.is_floating_point() else False
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if isinstance(value, float):
        return value != value
    if isinstance(value, (list, tuple)):
        return any(_has_nan(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    return False


def claim(condition, text, **numbers):
    """Check that ``condition`` (computed from the lesson's numbers) holds for the sentence ``text``.
    A claim whose ``numbers`` contain a NaN fails whatever ``condition`` says.

    Returns a :class:`Verdict`, true when it holds. When it does not: raises :class:`ClaimFailed`
    naming the sentence and ``numbers``, or, in fast mode, prints that the claim was not checked
    and returns a false Verdict."""
    nan = [k for k, v in numbers.items() if _has_nan(v)]
    if bool(condition) and not nan:
        return Verdict(True)
    detail = ", ".join(f"{k} = {_fmt(v)}" for k, v in numbers.items())
    if nan:  # a comparison with NaN can come out either way (max([1e-9, nan]) < 1e-6 holds): never a pass
        detail = f"{', '.join(nan)} contain(s) NaN; " + detail
    if fast_mode():
        print(f"(fast mode: the claim {text!r} does not hold for these tiny-training numbers; not checked)")
        return Verdict(False)
    raise ClaimFailed(f"the lesson says {text!r}, but its numbers do not show it" + (f": {detail}" if detail else ""))
