"""Sampling the tilted distribution exactly: a Feynman-Kac corrector with sequential Monte Carlo
(Skreta et al., ICML 2025), in the VE/EDM form of lesson 9.

CFG's reverse SDE uses the score of q_sigma ∝ p_sigma(x | y)^w p_sigma(x)^(1-w), but q_sigma does
not evolve like a diffused density: with sigma(t) = t, a density that diffuses obeys
d p / dt = t Laplacian(p), and q_sigma obeys the same equation plus a *reaction* term,

    d q / dt = t Laplacian(q) + t w (1 - w) ||s_c - s_u||^2 q,

(from log q = w log p_c + (1 - w) log p_u and w a^2 + (1-w) b^2 - (w a + (1-w) b)^2 = w (1-w)(a-b)^2).
Run backwards, the reaction becomes a weight: each particle's log-weight grows by

    w (w - 1) t |dt| ||s_c - s_u||^2  =  w (w - 1) (sigma_i^2 - sigma_{i+1}^2) / 2 * ||D_c - D_u||^2 / sigma_i^4

per step (scores through Tweedie). Weighted particles that are resampled whenever the weights
degenerate (effective sample size below a threshold) target q_0 = p_gamma, gamma = w, exactly as
the number of particles grows. With one particle it is CFG's plain reverse SDE.
"""
import torch
from tqdm import tqdm

from .samplers import _call, check_sigmas


def fk_log_weight_increment(D_c, D_u, w, sigma, sigma_next):
    """The Feynman-Kac log-weight increment of one step sigma -> sigma_next: [N].

    D_c, D_u: [N, ...] the conditional and unconditional denoisers' outputs at (x, sigma)."""
    diff2 = (D_c - D_u).flatten(1).pow(2).sum(1)
    return w * (w - 1) * (sigma**2 - sigma_next**2) / 2 * diff2 / sigma**4


def effective_sample_size(logw):
    """ESS of log-weights [..., P] along the last axis: 1 / sum(normalised w^2), in [1, P]."""
    p = torch.softmax(logw, dim=-1)
    return 1.0 / p.pow(2).sum(-1)


def systematic_resample(logw, generator=None):
    """Systematic resampling of each row of log-weights [R, P]: indices [R, P] into the row.
    One uniform per row, P evenly spaced pointers; particle j is copied about P w_j times."""
    R, P = logw.shape
    c = torch.softmax(logw, dim=-1).cumsum(-1)
    c[:, -1] = 1.0  # guard against rounding: the last pointer must land inside the row
    u = (torch.rand(R, 1, generator=generator, dtype=c.dtype) + torch.arange(P, dtype=c.dtype)) / P
    return torch.searchsorted(c, u).clamp(max=P - 1)


def feynman_kac_cfg(D, w, x, sigmas, y, *, particles, ess_threshold=0.5, generator=None, progress=False,
                    increment=fk_log_weight_increment, ess=effective_sample_size):
    """Sample p(x | y)^w p(x)^(1-w) with CFG's reverse SDE plus Feynman-Kac weights and resampling.

    Args:
        D: a conditional denoiser, D(x, sigma, y) and D(x, sigma, None) (unconditional).
        w: the guidance weight = the tilt exponent gamma.
        x: [N, ...] starting noise at sigmas[0] (x = sigmas[0] * randn); N = runs * particles:
            the rows are split into N / particles independent SMC runs of ``particles`` each.
        sigmas: the decreasing noise levels, ending at 0.
        y: the class label(s).
        particles: particles per run (1 = plain CFG reverse SDE, no resampling).
        ess_threshold: resample a run when its ESS falls below this fraction of ``particles``.
        increment, ess: the weight increment and the ESS (the lesson passes a learner's own).

    Returns: (samples [N, ...] with equal weights: every run is resampled once more at the end,
    info dict with ``resamples`` (resampling events per run, averaged), ``min_ess`` (the
    smallest ESS fraction seen, averaged over runs) and ``calls`` (denoiser calls per sample)).
    """
    sigmas = check_sigmas(sigmas)
    N = x.shape[0]
    if int(particles) != particles or particles < 1 or N % particles:
        raise ValueError(f"particles must be a whole number >= 1 that divides the batch N = {N}; got {particles}")
    R, P = N // particles, int(particles)
    logw = torch.zeros(R, P, dtype=torch.float64)
    resamples, min_ess = torch.zeros(R), torch.ones(R, dtype=torch.float64)
    steps = len(sigmas) - 1
    for i in tqdm(range(steps), disable=not progress, desc="feynman_kac_cfg"):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        D_c, D_u = _call(D, x, s, y, i), _call(D, x, s, None, i)
        logw += increment(D_c, D_u, w, s, s_next).to(torch.float64).reshape(R, P)
        var = s**2 - s_next**2
        x = x + var * (D_u + w * (D_c - D_u) - x) / s**2  # Euler-Maruyama with CFG's score
        x = x + var**0.5 * torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        frac = ess(logw) / P
        min_ess = torch.minimum(min_ess, frac)
        low = (frac < ess_threshold) if i < steps - 1 else torch.ones(R, dtype=torch.bool)  # always at the end
        if P > 1 and low.any():
            idx = systematic_resample(logw[low], generator)  # [R', P]
            xr = x.reshape(R, P, *x.shape[1:])
            xr[low] = torch.gather(xr[low], 1, idx.reshape(*idx.shape, *([1] * (x.ndim - 1))).expand_as(xr[low]))
            x = xr.reshape(x.shape)
            logw[low] = 0.0
            resamples += low.float() * (i < steps - 1)
    return x, {"resamples": resamples.mean().item(), "min_ess": min_ess.mean().item(), "calls": 2 * steps}
