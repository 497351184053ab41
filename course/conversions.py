"""One place for every change of parameterisation (Ho et al. 2020, https://arxiv.org/abs/2006.11239;
Karras et al. 2022, https://arxiv.org/abs/2206.00364; lesson 1).

Two views of one diffusion model:

* VE / EDM: ``x = x0 + sigma * n``; a denoiser ``D(x, sigma)`` estimates ``x0``.
* VP / DDPM (the seed's Algorithms 1 and 2): ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``;
  a network ``eps_theta(x_t, t)`` estimates ``eps``.

The bridge: ``sigma_t = sqrt((1 - abar_t) / abar_t)`` and ``x = x_t / sqrt(abar_t)``. Then
``D = x - sigma * eps`` and ``score = (D - x) / sigma^2 = -eps / sigma`` (Tweedie), and in the
VP variable ``grad_{x_t} log p_t(x_t) = -eps / sqrt(1 - abar_t)`` (the seed's identity).

Every tensor function broadcasts ``sigma`` (a float, a 0-d tensor or a tensor of shape [N])
over the trailing dimensions of ``x`` (shape [N, ...]).
"""
import math

import torch


def check_input(model, x, dtype=True):
    """x must be a real tensor on the device of ``model``'s weights and (``dtype=True``, for models
    that do not cast their input) of their dtype; otherwise a ValueError that says how to convert
    (PyTorch's own message, "mat1 and mat2 must have the same dtype", names neither x nor the fix)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a floating-point tensor; got {got}")
    p = next(model.parameters(), None)
    if p is None:
        return
    name = type(model).__name__
    if x.device != p.device:
        raise ValueError(f"x is on {x.device} but {name}'s weights are on {p.device}: "
                         f"move x with x.to('{p.device}') (or the model with model.to('{x.device}'))")
    if dtype and x.dtype != p.dtype:
        raise ValueError(f"x is {x.dtype} but {name}'s weights are {p.dtype}: convert x with x.to({p.dtype}) "
                         f"(or the model with model.to({x.dtype}))")


def expand_sigma(sigma, x: torch.Tensor) -> torch.Tensor:
    """Return sigma as a tensor of shape [N, 1, ..., 1] (or [] for a scalar) that broadcasts with x."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if sigma.ndim == 0:
        return sigma
    if sigma.ndim != 1 or sigma.shape[0] != x.shape[0]:
        raise ValueError(
            f"sigma must be a number or a tensor of shape [N] = [{x.shape[0]}] matching x's batch; "
            f"got shape {list(sigma.shape)}. Pass one noise level per sample or a single number."
        )
    return sigma.reshape(-1, *([1] * (x.ndim - 1)))


def as_labels(y) -> torch.Tensor:
    """Class labels as a long tensor. Integer-valued floats are accepted (1.0 -> 1); any other
    float (1.7) is an error, never silently truncated."""
    t = torch.as_tensor(y)
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"labels must be integers; got a {t.dtype} tensor")
    if t.is_floating_point():
        if not torch.isfinite(t).all() or (t != t.round()).any():
            raise ValueError(f"labels must be whole numbers (class indices); got {t.reshape(-1)[:8].tolist()}: "
                             "pass integer labels, e.g. torch.tensor([0, 1])")
    return t.to(torch.long)


# --- eps, x0 and score (VE form) -------------------------------------------------------------
def x0_from_eps(x, eps, sigma):
    """D = x - sigma * eps."""
    return x - expand_sigma(sigma, x) * eps


def eps_from_x0(x, x0, sigma):
    """eps = (x - D) / sigma."""
    return (x - x0) / expand_sigma(sigma, x)


def flow_velocity_from_x0(x, x0, sigma):
    """The flow-matching velocity v = eps - x0 of the same prediction (rectified flow,
    x_t = (1 - t) x0 + t eps, whose ODE is dx_t/dt = v), in the VE variable x = x_t / (1 - t),
    sigma = t / (1 - t): v = (x - D) / sigma - D. CFG-Zero* and MAMBO-G work on this v."""
    return (x - x0) / expand_sigma(sigma, x) - x0


def x0_from_flow_velocity(x, v, sigma):
    """The inverse of :func:`flow_velocity_from_x0`: D = (x - sigma v) / (1 + sigma). v = 0 (flow
    matching's "zero velocity") is D = x / (1 + sigma), not D = x."""
    s = expand_sigma(sigma, x)
    return (x - s * v) / (1 + s)


def score_from_x0(x, x0, sigma):
    """Tweedie: grad_x log p(x; sigma) = (D(x; sigma) - x) / sigma^2."""
    return (x0 - x) / expand_sigma(sigma, x) ** 2


def x0_from_score(x, score, sigma):
    """D = x + sigma^2 * score."""
    return x + expand_sigma(sigma, x) ** 2 * score


def score_from_eps(eps, sigma):
    """grad_x log p(x; sigma) = -eps / sigma (VE variable x)."""
    return -eps / expand_sigma(sigma, eps)


def vp_score_from_eps(eps, abar):
    """The seed's identity, in the VP variable x_t: grad log p_t(x_t) = -eps / sqrt(1 - abar_t)."""
    return -eps / torch.sqrt(1 - expand_sigma(abar, eps))


# --- VP schedules and the bridge to sigma ---------------------------------------------------------
def linear_betas(T: int = 1000, beta_1: float = 1e-4, beta_T: float = 0.02) -> torch.Tensor:
    """DDPM's linear schedule: betas[t-1] = beta_t for t = 1..T (float64, shape [T])."""
    return torch.linspace(beta_1, beta_T, T, dtype=torch.float64)


def cosine_betas(T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Improved DDPM's cosine schedule (ADM's 64x64 model): abar(t) = f(t)/f(0),
    f(t) = cos(((t/T) + s)/(1 + s) * pi/2)^2, beta_t = min(1 - abar(t+1)/abar(t), max_beta).
    Returns float64, shape [T]."""
    def f(t):
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    betas = [min(1 - f(t + 1) / f(t), max_beta) for t in range(T)]
    return torch.tensor(betas, dtype=torch.float64)


def alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """abar_t = prod_{s <= t} (1 - beta_s); same shape as betas."""
    return torch.cumprod(1 - betas.to(torch.float64), dim=0)


def sigma_from_abar(abar):
    """sigma_t = sqrt((1 - abar_t) / abar_t)."""
    abar = torch.as_tensor(abar, dtype=torch.float64)
    return torch.sqrt((1 - abar) / abar)


def abar_from_sigma(sigma):
    """Inverse of :func:`sigma_from_abar`: abar = 1 / (1 + sigma^2)."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    return 1 / (1 + sigma**2)


def timestep_from_sigma(sigma, abar_table: torch.Tensor) -> torch.Tensor:
    """Continuous timestep t (0-based index into ``abar_table``) whose sigma equals ``sigma``.

    A discrete-time network was trained only at integer t; between two table entries we
    interpolate linearly in log sigma (the table's sigmas increase with t). Sigmas outside the
    table are clamped to its ends.
    """
    log_table = torch.log(sigma_from_abar(abar_table))  # [T], increasing
    log_s = torch.log(torch.as_tensor(sigma, dtype=torch.float64)).reshape(-1)
    log_s = log_s.clamp(log_table[0], log_table[-1])
    hi = torch.searchsorted(log_table, log_s).clamp(1, len(log_table) - 1)
    lo = hi - 1
    frac = (log_s - log_table[lo]) / (log_table[hi] - log_table[lo])
    return lo.to(torch.float64) + frac


def vp_input(x, sigma, abar_table):
    """The VP network input for a VE point x [N, ...] at noise sigma (number or [N]):
    (x_t = sqrt(abar) x with abar = 1/(1 + sigma^2), the continuous timestep t [N] of the table)."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).expand(x.shape[0])
    t = timestep_from_sigma(sigma.cpu(), abar_table.cpu()).to(x.device)
    x_t = x * expand_sigma(abar_from_sigma(sigma).sqrt().to(x.dtype), x)
    return x_t, t.to(x.dtype)


class EpsDenoiser(torch.nn.Module):
    """Turn a VP eps-network ``eps_net(x_t, t, y)`` into a denoiser ``D(x, sigma, y)``.

    For a VE input x at noise sigma: abar = 1/(1 + sigma^2), x_t = sqrt(abar) x, t is the
    (continuous) timestep with that abar, and D = x - sigma * eps_net(x_t, t, y).

    ``round_timesteps=True`` feeds the nearest integer t, as a network trained on integer steps
    was; the samplers below that run on the network's own timesteps hit integers exactly anyway.
    """

    def __init__(self, eps_net, abar_table: torch.Tensor, round_timesteps: bool = False):
        super().__init__()
        self.eps_net = eps_net
        self.register_buffer("abar_table", abar_table.to(torch.float64), persistent=False)
        self.round_timesteps = round_timesteps

    def eps(self, x, sigma, y=None):
        x_t, t = vp_input(x, sigma, self.abar_table)
        if self.round_timesteps:
            t = t.round()
        return self.eps_net(x_t, t, y)

    def forward(self, x, sigma, y=None):
        return x0_from_eps(x, self.eps(x, sigma, y), sigma)
