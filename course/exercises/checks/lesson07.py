"""Checks for lesson 7."""
import torch

from ..checking import expect, fmt


def _expected(sigmas, lo, hi):
    s = [float(v) for v in sigmas]
    return sum((1 if b == 0 else 2) * (2 if lo < a <= hi else 1) for a, b in zip(s, s[1:]))


def check_interval_calls(fn):
    edm = torch.tensor([80.0, 20.0, 5.0, 2.9, 1.0, 0.28, 0.05, 0.0])  # 7 steps, two sigmas on the interval's ends
    cases = [
        (edm, 0.28, 2.90, "the interval (0.28, 2.90]: 2.90 is inside, 0.28 is not"),
        (edm, 0.0, 100.0, "an interval that holds every step: plain autoguidance, twice the unguided cost"),
        (edm, 100.0, 200.0, "an interval that holds no step: the main model alone, 2 x 7 - 1 = 13"),
        (torch.tensor([10.0, 0.0]), 0.0, 100.0, "one step, straight to sigma = 0 (one Euler evaluation, guided)"),
        (torch.tensor([3.0, 2.0, 1.0, 0.5, 0.0], dtype=torch.float64), 0.5, 2.0, "float64 sigmas, (0.5, 2.0]"),
    ]
    for sigmas, lo, hi, why in cases:
        call = f"interval_calls(sigmas={fmt(sigmas)}, lo={lo}, hi={hi})"
        got = fn(sigmas, lo, hi)
        want = _expected(sigmas, lo, hi)
        expect(isinstance(got, (int, float)) and not isinstance(got, bool) and float(got) == int(got),
               f"{call} should return a whole number of evaluations; got {got!r}")
        expect(int(got) == want, f"{call} returned {got}; expected {want} ({why})")
