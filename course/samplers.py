"""Samplers. Each takes any denoiser ``D(x, sigma, y)`` - exact, learned or guided - and never
looks inside it. Each is a short function named after its paper.

* :func:`ddpm`      - Ho et al. 2020, the seed's Algorithm 2 (ancestral, VP variable x_t).
* :func:`ddim`      - Song et al. 2021 (eta = 0 deterministic; eta = 1 is DDPM-like).
* :func:`edm_euler` / :func:`edm_heun` - Karras et al. 2022, Algorithm 1 (deterministic).

All return the final sample, or ``(sample, trajectory)`` with ``trajectory=True``, where the
trajectory [steps + 1, N, ...] holds the iterates in the VE variable (x / sqrt(abar) for the VP
samplers), so trajectories of every sampler can be drawn on the same axes.
"""
import torch
from tqdm import tqdm

from . import conversions as cv


def edm_sigmas(steps: int = 32, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """EDM's noise levels (REFERENCE section 1):
    sigma_i = (smax^(1/rho) + i/(N-1) (smin^(1/rho) - smax^(1/rho)))^rho for i < N, then sigma_N = 0.
    Shape [steps + 1], float64."""
    i = torch.arange(steps, dtype=torch.float64)
    s = (sigma_max ** (1 / rho) + i / max(steps - 1, 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([s, torch.zeros(1, dtype=torch.float64)])


def _call(D, x, sigma, y):
    """Evaluate D at one noise level, as a tensor of x's dtype."""
    return D(x, torch.as_tensor(float(sigma), dtype=x.dtype, device=x.device), y)


def edm_euler(D, x, sigmas, y=None, *, trajectory=False, progress=False):
    """Euler's method on the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma.
    ``x`` [N, ...] starts at noise level sigmas[0] (x = sigmas[0] * randn). One D call per step."""
    traj = [x]
    for i in tqdm(range(len(sigmas) - 1), disable=not progress, desc="edm_euler"):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        d = (x - _call(D, x, s, y)) / s
        x = x + (s_next - s) * d
        traj.append(x)
    return (x, torch.stack(traj)) if trajectory else x


def edm_heun(D, x, sigmas, y=None, *, trajectory=False, progress=False):
    """Heun's 2nd-order method (EDM Algorithm 1, S_churn = 0): an Euler step, then the average of
    the slopes at both ends - except on the last step to sigma = 0, which stays Euler. With N
    noise levels that is 2N - 1 denoiser calls (32 steps: 63 calls)."""
    traj = [x]
    for i in tqdm(range(len(sigmas) - 1), disable=not progress, desc="edm_heun"):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        d = (x - _call(D, x, s, y)) / s
        x_next = x + (s_next - s) * d
        if s_next > 0:
            d_next = (x_next - _call(D, x_next, s_next, y)) / s_next
            x_next = x + (s_next - s) * 0.5 * (d + d_next)
        x = x_next
        traj.append(x)
    return (x, torch.stack(traj)) if trajectory else x


def _vp_eps(D, x_t, abar_t, y):
    """eps_theta(x_t, t) of any denoiser, through the bridge: x = x_t / sqrt(abar), sigma = sqrt((1-abar)/abar)."""
    sigma = float(cv.sigma_from_abar(abar_t))
    x = x_t / abar_t**0.5
    return cv.eps_from_x0(x, _call(D, x, sigma, y), sigma), x


def ddpm(D, x_T, betas, y=None, *, generator=None, trajectory=False, progress=False):
    """The seed's Algorithm 2 (ancestral sampling), for t = T, ..., 1:

        z ~ N(0, I) if t > 1 else 0
        x_{t-1} = 1/sqrt(alpha_t) (x_t - (1 - alpha_t)/sqrt(1 - abar_t) eps_theta(x_t, t)) + sigma_t z

    with sigma_t^2 = beta_t. ``x_T`` [N, ...] ~ N(0, I) (VP variable); ``betas`` [T] with
    betas[t - 1] = beta_t. eps_theta comes from D through the bridge (conversions module).
    """
    betas = betas.to(torch.float64)
    abar = cv.alphas_cumprod(betas)
    x = x_T
    traj = [x_T / abar[-1].sqrt().item()]
    for t in tqdm(range(len(betas), 0, -1), disable=not progress, desc="ddpm"):
        beta, ab = betas[t - 1].item(), abar[t - 1].item()
        eps, _ = _vp_eps(D, x, ab, y)
        x = (x - beta / (1 - ab) ** 0.5 * eps) / (1 - beta) ** 0.5
        if t > 1:
            x = x + beta**0.5 * torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        traj.append(x / (abar[t - 2].item() if t > 1 else 1.0) ** 0.5)
    return (x, torch.stack(traj)) if trajectory else x


def ddim(D, x_T, abar, y=None, *, steps=50, eta=0.0, generator=None, trajectory=False, progress=False):
    """DDIM (Song et al. 2021, eq. 12) on ``steps`` evenly spaced timesteps of the table ``abar`` [T]:

        x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - s^2) eps + s z,
        s = eta * sqrt((1 - abar_prev)/(1 - abar_t)) * sqrt(1 - abar_t/abar_prev).

    eta = 0 is deterministic (it is Euler's method in the VE variable). ``x_T`` ~ N(0, I).
    """
    abar = abar.to(torch.float64)
    ts = torch.linspace(len(abar) - 1, 0, steps).round().long().tolist()
    x = x_T
    traj = [x_T / abar[ts[0]].sqrt().item()]
    for i in tqdm(range(len(ts)), disable=not progress, desc="ddim"):
        ab = abar[ts[i]].item()
        ab_prev = abar[ts[i + 1]].item() if i + 1 < len(ts) else 1.0
        eps, x_ve = _vp_eps(D, x, ab, y)
        x0 = x_ve - float(cv.sigma_from_abar(ab)) * eps
        s = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)) ** 0.5
        x = ab_prev**0.5 * x0 + max(1 - ab_prev - s**2, 0.0) ** 0.5 * eps
        if s > 0:
            x = x + s * torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        traj.append(x / ab_prev**0.5)
    return (x, torch.stack(traj)) if trajectory else x


def sample(D, n, dim, y=None, *, steps=32, sigma_max=80.0, sigma_min=0.002, rho=7.0, seed=0,
           trajectory=False, progress=False, dtype=torch.float32):
    """Convenience: n samples of shape [n, *dim] with :func:`edm_heun` from seeded noise.
    ``dim`` is an int (vectors) or a shape tuple (images); ``y`` a label, [n] labels or None."""
    shape = (n, dim) if isinstance(dim, int) else (n, *dim)
    g = torch.Generator().manual_seed(seed)
    sigmas = edm_sigmas(steps, sigma_min, sigma_max, rho)
    x = torch.randn(shape, generator=g, dtype=dtype) * sigmas[0].item()
    if y is not None:
        y = torch.as_tensor(y, dtype=torch.long).reshape(-1).expand(n) if torch.as_tensor(y).numel() == 1 else torch.as_tensor(y)
    with torch.no_grad():
        return edm_heun(D, x, sigmas, y, trajectory=trajectory, progress=progress)
