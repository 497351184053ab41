"""Lesson 7 reference solutions."""


def interval_calls(sigmas, lo, hi):
    s = [float(v) for v in sigmas]
    total = 0
    for start, end in zip(s[:-1], s[1:]):
        evaluations = 1 if end == 0 else 2          # Heun's last step, to sigma = 0, is one Euler evaluation
        total += evaluations * (2 if lo < start <= hi else 1)   # decided by the step's starting sigma
    return total
