"""The density a learned denoiser implies, through the probability-flow ODE (Song et al. 2021).

Along the ODE dx/dsigma = f(x, sigma) = (x - D(x; sigma)) / sigma the log-density changes by the
divergence of f (instantaneous change of variables):

    log p(x; sigma_lo) = log p(x(sigma_hi); sigma_hi) + integral_{sigma_lo}^{sigma_hi} div f(x(s), s) ds,

where x(s) follows the ODE from x at sigma_lo up to sigma_hi. At sigma_hi >> the data's scale,
p(.; sigma_hi) is close to N(0, (sigma_hi^2 + data variance) I). In low dimensions the divergence is
computed exactly, one autograd pass per coordinate. This is how the toy lessons draw a *learned*
model's density: for the exact mixture the same code reproduces ``GaussianMixture.log_prob``.
"""
import math

import torch
from tqdm import tqdm

from .samplers import edm_sigmas


def _drift_and_divergence(D, x, sigma, y):
    """f = (x - D)/sigma and div_x f, exactly (d autograd passes), for x [N, d]."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        f = (x - D(x, torch.as_tensor(sigma, dtype=x.dtype), y)) / sigma
        div = torch.zeros(x.shape[0], dtype=x.dtype)
        for i in range(x.shape[1]):
            (g,) = torch.autograd.grad(f[:, i].sum(), x, retain_graph=i + 1 < x.shape[1])
            div = div + g[:, i]
    return f.detach(), div.detach()


def ode_log_prob(D, x, sigma, y=None, sigma_max=20.0, steps=64, data_var=0.25, rho=7.0, progress=True):
    """log p(x; sigma) [N] implied by the denoiser D, for points x [N, d] at noise level ``sigma``.

    Integrates the ODE from sigma up to sigma_max with Heun's method on EDM's rho-spaced levels,
    accumulating the divergence, and ends in N(0, (sigma_max^2 + data_var) I). ``progress``
    shows a bar over the steps.
    """
    x = torch.as_tensor(x)
    levels = edm_sigmas(steps, sigma_min=float(sigma), sigma_max=sigma_max, rho=rho)[:-1].flip(0)  # sigma -> sigma_max
    delta = torch.zeros(x.shape[0], dtype=x.dtype)
    pairs = list(zip(levels[:-1].tolist(), levels[1:].tolist()))
    for s, s_next in tqdm(pairs, disable=not progress, desc="likelihood ODE", leave=False):
        f, div = _drift_and_divergence(D, x, s, y)
        x_euler = x + (s_next - s) * f
        f2, div2 = _drift_and_divergence(D, x_euler, s_next, y)
        x = x + (s_next - s) * 0.5 * (f + f2)
        delta = delta + (s_next - s) * 0.5 * (div + div2)
    var = sigma_max**2 + data_var
    d = x.shape[1]
    log_end = -0.5 * (x**2).sum(1) / var - 0.5 * d * math.log(2 * math.pi * var)
    return log_end + delta
