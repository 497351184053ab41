"""Guidance scale schedules: w as a function of sigma (lesson 8; REFERENCE section 6).

Every guider of the course accepts ``w`` as a number or as a function of sigma, so a schedule is
just such a function. Each one here switches guidance on (its w) or off (1) by noise level, and
they compose: ``combine(w, interval(0.28, 2.9), steps_fraction(sigmas, 0.0, 0.9))`` guides only
where every mask is on.

* :func:`interval`       - on for sigma in (lo, hi] (Kynkaanniemi et al. 2024).
* :func:`steps_fraction` - on for the steps from ``start`` to ``stop`` as fractions of a sampler's
  schedule (diffusers' start/stop; SD3.5's skip-layer guidance is on for 1-20% of the steps).
* :func:`zero_init`      - off for the first ``fraction`` of the steps (CFG-Zero*'s first ~4%, as
  a scale: no guidance there; :class:`~course.alternatives.CFGZeroStar` can also zero the
  velocity itself).
"""
import torch

from .guiders import _check_w


def interval(lo, hi):
    """A mask: 1 for sigma in (lo, hi], else 0."""
    if not 0 <= lo < hi:
        raise ValueError(f"an interval needs 0 <= lo < hi; got ({lo}, {hi}]" + (": swapped?" if lo > hi else ""))
    return lambda sigma: ((torch.as_tensor(sigma) > lo) & (torch.as_tensor(sigma) <= hi)).double()


def steps_fraction(sigmas, start, stop):
    """A mask that is 1 on the steps i with start <= i / N < stop of the schedule ``sigmas``
    (N = number of steps): on for sigma in (sigmas[last guided step + 1], sigmas[first guided step]].
    A mask sees only sigma, so Heun's second call of the last guided step, made at the next
    step's sigma, is already off."""
    if not 0 <= start < stop <= 1:
        raise ValueError(f"need 0 <= start < stop <= 1 (fractions of the steps); got start={start}, stop={stop}")
    sig = torch.as_tensor(sigmas, dtype=torch.float64)
    n = len(sig) - 1
    hi = sig[int(round(start * n))].item()  # the first guided step starts here
    last = int(round(stop * n)) - 1  # the last guided step
    lo = sig[last + 1].item() if last >= 0 else hi
    # step i covers (sigmas[i+1], sigmas[i]]: guided steps cover (lo, hi]
    return lambda sigma: ((torch.as_tensor(sigma) > lo) & (torch.as_tensor(sigma) <= hi)).double()


def zero_init(sigmas, fraction=0.04):
    """A mask that is 0 on the first ``fraction`` of the steps of ``sigmas`` (at least one step) and 1 after."""
    sig = torch.as_tensor(sigmas, dtype=torch.float64)
    k = max(1, int(round(fraction * (len(sig) - 1))))
    below = sig[k].item()
    return lambda sigma: (torch.as_tensor(sigma) <= below).double()


def combine(w, *masks):
    """The scale function w_eff(sigma) = 1 + (w(sigma) - 1) * prod(masks(sigma)): ``w`` (a number
    or a function of sigma) where every mask is 1, no guidance (1) where any is 0."""
    _check_w(w)

    def scale(sigma):
        value = torch.as_tensor(w(sigma) if callable(w) else w, dtype=torch.float64)
        on = torch.ones_like(torch.as_tensor(sigma, dtype=torch.float64))
        for m in masks:
            on = on * m(sigma)
        return 1 + (value - 1) * on
    return scale
