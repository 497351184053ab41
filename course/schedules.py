"""Guidance scale schedules: w as a function of sigma (lesson 8; each function cites its source).

Every guider of the course accepts ``w`` as a number or as a function of sigma, so a schedule is
just such a function. Each one here switches guidance on (its w) or off (1) by noise level, and
they compose: ``combine(w, interval(0.28, 2.9), steps_fraction(sigmas, 0.0, 0.9))`` guides only
where every mask is on.

* :func:`interval`       - on for sigma in (lo, hi] (Kynkaanniemi et al. 2024).
* :func:`steps_fraction` - on for the steps from ``start`` to ``stop`` as fractions of a sampler's
  schedule (diffusers' start/stop; SD3.5's skip-layer guidance is on for 1-20% of the steps).
* :func:`cfgpp_scale`    - the scale that makes CFG on Euler (or DDIM) steps *be* CFG++ (Chung
  et al. 2024): w(sigma_i) = lam sigma_i / (sigma_i - sigma_{i+1}).
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
    """A mask that is 1 on the steps i with int(start N) <= i < int(stop N) of the schedule
    ``sigmas`` (N = number of steps; diffusers' guiders' rule, which floors: 0.2 of 28 steps is 5): on for sigma in (sigmas[last guided step + 1], sigmas[first guided step]].
    A mask sees only sigma, so Heun's second call of the last guided step, made at the next
    step's sigma, is already off."""
    if not 0 <= start < stop <= 1:
        raise ValueError(f"need 0 <= start < stop <= 1 (fractions of the steps); got start={start}, stop={stop}")
    sig = torch.as_tensor(sigmas, dtype=torch.float64)
    n = len(sig) - 1
    hi = sig[int(start * n)].item()  # the first guided step starts here (floored, as diffusers: int(start * N))
    last = int(stop * n) - 1  # the last guided step: int(stop * N) is the first unguided one
    lo = sig[last + 1].item() if last >= 0 else hi
    # step i covers (sigmas[i+1], sigmas[i]]: guided steps cover (lo, hi]
    return lambda sigma: ((torch.as_tensor(sigma) > lo) & (torch.as_tensor(sigma) <= hi)).double()


def zero_init(sigmas, fraction=0.04):
    """A mask that is 0 on the first ``fraction`` of the steps of ``sigmas`` (at least one step) and 1 after."""
    if not 0 <= fraction < 1:  # also false for NaN
        raise ValueError(f"zero_init's fraction is a share of the steps in [0, 1); got {fraction}")
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


def cfgpp_scale(sigmas, lam):
    """CFG++ as CFG with a step-dependent scale. CFG++'s Euler step (Chung et al. 2024,
    https://arxiv.org/abs/2406.08070; :func:`course.samplers.cfgpp_euler`) is

        x_{i+1} = D_lam + sigma_{i+1} (x - D_u) / sigma_i,     D_lam = D_u + lam (D_c - D_u),

    and an ordinary Euler step with CFG's D_w = D_u + w (D_c - D_u) is
    x_{i+1} = D_w + (sigma_{i+1} / sigma_i) (x - D_w). The two agree for every x when
    w (1 - sigma_{i+1} / sigma_i) = lam, i.e.

        w(sigma_i) = lam sigma_i / (sigma_i - sigma_{i+1}).

    Returns that scale as a function of sigma for the schedule ``sigmas`` (each sigma_i of the
    schedule maps to its step's w; it is meant for Euler steps, one call per step at sigma_i).
    Steps are short where the schedule is dense, so w is large there: a fixed lam guides hardest
    where the sampler takes its smallest steps."""
    sig = torch.as_tensor(sigmas, dtype=torch.float64)
    if sig.ndim != 1 or len(sig) < 2 or not (sig[1:] < sig[:-1]).all():
        raise ValueError("cfgpp_scale needs a decreasing schedule of at least 2 noise levels (e.g. samplers.edm_sigmas(32))")
    table = lam * sig[:-1] / (sig[:-1] - sig[1:])

    def scale(sigma):
        s = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1)
        i = (s[:, None] - sig[None, :-1]).abs().argmin(dim=1)
        if not torch.allclose(sig[i], s, rtol=1e-6, atol=0):
            raise ValueError(f"cfgpp_scale: sigma {s.tolist()[:4]} is not a noise level of its schedule; "
                             "CFG++ as CFG holds at the schedule's own steps (Euler: one call per step)")
        w = table[i]
        return w.reshape(torch.as_tensor(sigma).shape) if torch.as_tensor(sigma).ndim else w[0]
    return scale
