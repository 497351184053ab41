"""Samplers. Each takes any denoiser ``D(x, sigma, y)`` - exact, learned or guided - and never
looks inside it. Each is a short function named after its paper.

* :func:`ddpm`      - Ho et al. 2020, the seed's Algorithm 2 (ancestral, VP variable x_t).
* :func:`ddim`      - Song et al. 2021 (eta = 0 deterministic; eta = 1 is DDPM-like).
* :func:`edm_euler` / :func:`edm_heun` - Karras et al. 2022, Algorithm 1 (deterministic).
* :func:`edm_sde`   - Euler-Maruyama on the reverse-time SDE of the same VE process (Song et al. 2021).
* :func:`pcg`       - predictor-corrector guidance (Bradley & Nakkiran 2025): an ODE step with one
  denoiser, then Langevin corrector steps with another.
* :func:`cfgpp_euler` / :func:`cfgpp_ddim` - CFG++ (Chung et al. 2024): guide the x0 estimate,
  renoise with the *unconditional* prediction. On Euler / DDIM steps that is CFG with the
  step-dependent scale w(sigma_i) = lam sigma_i / (sigma_i - sigma_{i+1})
  (:func:`course.schedules.cfgpp_scale`; lesson 8 checks it).

All return the final sample, or ``(sample, trajectory)`` with ``trajectory=True``, where the
trajectory [steps + 1, N, ...] holds the iterates in the VE variable (x / sqrt(abar) for the VP
samplers), so trajectories of every sampler can be drawn on the same axes.

Every sampler checks what it is given: a noise schedule must be finite and strictly decreasing,
with only its last entry allowed to be 0; the denoiser's output must have x's shape (no silent
broadcasting of an [N, 1] or [1, d] answer) and be finite - the first NaN or inf stops sampling
with the step and sigma at which it appeared.
"""
import math

import torch
from tqdm import tqdm

from . import conversions as cv


def edm_sigmas(steps: int = 32, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """EDM's noise levels (Karras et al. 2022, https://arxiv.org/abs/2206.00364, eq. 5):
    sigma_i = (smax^(1/rho) + i/(N-1) (smin^(1/rho) - smax^(1/rho)))^rho for i < N, then sigma_N = 0.
    Shape [steps + 1], float64."""
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a whole number >= 1; got {steps}")
    if not (0 < sigma_min <= sigma_max < math.inf):
        raise ValueError(f"need 0 < sigma_min <= sigma_max < inf; got sigma_min={sigma_min}, sigma_max={sigma_max}"
                         + (" (sigma_min > sigma_max: swapped?)" if sigma_min > sigma_max else ""))
    if not rho > 0:
        raise ValueError(f"rho must be > 0; got {rho}")
    i = torch.arange(steps, dtype=torch.float64)
    s = (sigma_max ** (1 / rho) + i / max(steps - 1, 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([s, torch.zeros(1, dtype=torch.float64)])


def randn(shape, generator=None, dtype=torch.float32):
    """Standard normal noise of ``shape`` on the CPU from ``generator``: one torch.Generator for
    the whole tensor, or a list of generators, one per row (row i = randn(shape[1:]) drawn from
    generator[i]), so that each row depends on its own seed alone and not on its batch - EDM2's
    StackedRandomGenerator."""
    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} per-row generators for {shape[0]} rows")
        return torch.stack([torch.randn(tuple(shape[1:]), generator=g, dtype=dtype) for g in generator])
    return torch.randn(tuple(shape), generator=generator, dtype=dtype)


def check_sigmas(sigmas) -> torch.Tensor:
    """A noise schedule [steps + 1]: finite, strictly decreasing, > 0 except possibly the last entry."""
    s = torch.as_tensor(sigmas, dtype=torch.float64).detach().cpu()
    if s.ndim != 1 or len(s) < 2:
        raise ValueError(f"sigmas must be a 1-D schedule of at least 2 noise levels; got shape {list(s.shape)}")
    if not torch.isfinite(s).all():
        raise ValueError(f"sigmas must be finite; got {s.tolist()[:8]}...")
    bad = torch.nonzero(torch.cat([s[:-1] <= 0, s[-1:] < 0])).reshape(-1)
    if len(bad):
        i = int(bad[0])
        raise ValueError("sigmas must be > 0 except the last entry, which may be 0; "
                         f"got {'a zero' if s[i] == 0 else 'a negative value'} at position {i}")
    if (s[1:] >= s[:-1]).any():
        i = int(torch.nonzero(s[1:] >= s[:-1])[0])
        raise ValueError(f"sigmas must decrease strictly (sampling runs from noise to data); sigmas[{i}] = {s[i]:.4g} "
                         f"<= sigmas[{i + 1}] = {s[i + 1]:.4g}. Use edm_sigmas(...) or flip the schedule.")
    return s


def _call(D, x, sigma, y, step=None):
    """Evaluate D at one noise level, as a tensor of x's dtype; its output must be x-shaped and finite."""
    out = D(x, torch.as_tensor(float(sigma), dtype=x.dtype, device=x.device), y)
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        raise ValueError(f"the denoiser must return a tensor of x's shape {list(x.shape)}; it returned "
                         f"{list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}"
                         + (f" at step {step}" if step is not None else "") + " (no broadcasting is done)")
    if not torch.isfinite(out).all():
        raise FloatingPointError(f"the denoiser returned NaN or inf at step {step} (sigma = {float(sigma):.4g}) "
                                 f"in {int((~torch.isfinite(out)).flatten(1).any(1).sum())} of {x.shape[0]} samples; "
                                 "check the model (NaN weights?), the guidance scale, and the inputs")
    return out


def _step_denoiser(D, unguided, guide_step, sigma_cur):
    """The denoiser of one step under a per-step guidance rule (see :func:`edm_heun`)."""
    if guide_step is None:
        return D
    if unguided is None:
        raise ValueError("guide_step needs unguided=..., the denoiser to use on the steps it leaves unguided")
    return D if bool(guide_step(sigma_cur)) else unguided


def edm_euler(D, x, sigmas, y=None, *, unguided=None, guide_step=None, trajectory=False, progress=False):
    """Euler's method on the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma.
    ``x`` [N, ...] starts at noise level sigmas[0] (x = sigmas[0] * randn). One D call per step.
    ``unguided`` / ``guide_step``: the per-step guidance rule, as in :func:`edm_heun`."""
    sigmas = check_sigmas(sigmas)
    traj = [x]
    for i in tqdm(range(len(sigmas) - 1), disable=not progress, desc="edm_euler"):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        D_i = _step_denoiser(D, unguided, guide_step, sigmas[i])
        d = (x - _call(D_i, x, s, y, i)) / s
        x = x + (s_next - s) * d
        traj.append(x)
    return (x, torch.stack(traj)) if trajectory else x


def edm_heun(D, x, sigmas, y=None, *, unguided=None, guide_step=None, trajectory=False, progress=False):
    """Heun's 2nd-order method (EDM Algorithm 1, S_churn = 0): an Euler step, then the average of
    the slopes at both ends - except on the last step to sigma = 0, which stays Euler. With N
    noise levels that is 2N - 1 denoiser calls (32 steps: 63 calls).

    Per-step guidance (the guidance interval as its paper's sampler applies it, Kynkaanniemi et
    al. 2024): with ``guide_step`` (a function of the step's starting noise level sigma_i, e.g.
    ``schedules.interval(0.28, 2.9)``), step i uses ``D`` for *both* of its calls when
    ``guide_step(sigma_i)`` holds and ``unguided`` otherwise. A scale that is a function of sigma
    inside a guider decides per call instead: the second call of step i is made at sigma_{i+1},
    so near the interval's ends one step can mix a guided and an unguided slope."""
    sigmas = check_sigmas(sigmas)
    traj = [x]
    for i in tqdm(range(len(sigmas) - 1), disable=not progress, desc="edm_heun"):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        D_i = _step_denoiser(D, unguided, guide_step, sigmas[i])
        d = (x - _call(D_i, x, s, y, i)) / s
        x_next = x + (s_next - s) * d
        if s_next > 0:
            d_next = (x_next - _call(D_i, x_next, s_next, y, i)) / s_next
            x_next = x + (s_next - s) * 0.5 * (d + d_next)
        x = x_next
        traj.append(x)
    return (x, torch.stack(traj)) if trajectory else x


def edm_sde(D, x, sigmas, y=None, *, generator=None, trajectory=False, progress=False):
    """Euler-Maruyama on the reverse-time SDE of the VE process x_sigma = x0 + sigma eps
    (Song et al. 2021, with sigma(t) = t so that g(t)^2 = d sigma^2 / dt):

        x <- x + (sigma_i^2 - sigma_{i+1}^2) score(x; sigma_i) + sqrt(sigma_i^2 - sigma_{i+1}^2) z,
        score = (D(x; sigma_i) - x) / sigma_i^2                                    (Tweedie)

    One D call per step. Unlike the ODE it injects fresh noise at every step, so it forgets
    errors; with CFG's D_w the two reach *different* distributions (lesson 9)."""
    sigmas = check_sigmas(sigmas)
    traj = [x]
    for i in tqdm(range(len(sigmas) - 1), disable=not progress, desc="edm_sde"):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        var = s**2 - s_next**2
        x = x + var * (_call(D, x, s, y, i) - x) / s**2
        x = x + var**0.5 * torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        traj.append(x)
    return (x, torch.stack(traj)) if trajectory else x


def pcg(D_predict, D_correct, x, sigmas, y=None, *, corrector_steps=1, delta=0.05, generator=None,
        trajectory=False, progress=False):
    """Predictor-corrector guidance (Bradley & Nakkiran 2025). For each step sigma_i -> sigma_{i+1}:

    * predictor: one DDIM step (Euler on the probability-flow ODE) with ``D_predict``, the
      conditional model p(x | y);
    * corrector: ``corrector_steps`` Langevin steps at sigma_{i+1} with ``D_correct`` (e.g. CFG's
      D_w, whose score is that of p_sigma(x | y)^w p_sigma(x)^(1-w)):

          x <- x + eps score(x; sigma_{i+1}) + sqrt(2 eps) z,

      with eps = delta sigma_{i+1}^2 (the course's choice, for running several corrector steps at
      one noise level), or, with ``delta=None``, eps = (sigma_i^2 - sigma_{i+1}^2) / 2: the step
      tied to the schedule under which Bradley & Nakkiran's equivalence holds - CFG with DDPM is,
      in the SDE limit, this scheme with one such corrector step on exponent 2w - 1.

    (No corrector at sigma = 0.) Calls: one per step plus one per corrector step, times the
    calls inside ``D_correct`` (2 for CFG). With many corrector steps it tracks
    p_sigma(x | y)^w p_sigma(x)^(1-w) at every sigma it can mix at."""
    sigmas = check_sigmas(sigmas)
    if int(corrector_steps) != corrector_steps or corrector_steps < 0:
        raise ValueError(f"corrector_steps must be a whole number >= 0; got {corrector_steps}")
    if delta is not None and not 0 < delta < 1:
        raise ValueError(f"delta (the Langevin step as a fraction of sigma^2) must lie in (0, 1), or be None "
                         f"(the step (sigma_i^2 - sigma_(i+1)^2) / 2); got {delta}")
    traj = [x]
    for i in tqdm(range(len(sigmas) - 1), disable=not progress, desc="pcg"):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        x = x + (s_next - s) * (x - _call(D_predict, x, s, y, i)) / s
        if s_next > 0:
            eps = delta * s_next**2 if delta is not None else (s**2 - s_next**2) / 2
            for _ in range(int(corrector_steps)):
                score = (_call(D_correct, x, s_next, y, i) - x) / s_next**2
                x = x + eps * score + (2 * eps) ** 0.5 * torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        traj.append(x)
    return (x, torch.stack(traj)) if trajectory else x


def _cfg_pair(D, x, sigma, y, step):
    """D_c and D_u of a conditional denoiser (NULL label = -1 for the unconditional branch)."""
    if y is None:
        raise ValueError("CFG++ needs the labels y to guide toward; got y=None")
    y = cv.as_labels(y).to(x.device).reshape(-1).expand(x.shape[0])
    return _call(D, x, sigma, y, step), _call(D, x, sigma, torch.full_like(y, -1), step)


def cfgpp_euler(D, lam, x, sigmas, y, *, trajectory=False, progress=False):
    """CFG++ (Chung et al. 2024) in the EDM / Euler form: with D_lam = D_u + lam (D_c - D_u),

        x_next = D_lam(x; sigma) + sigma_next * (x - D_u(x; sigma)) / sigma,

    i.e. step to the *guided* x0 estimate, then add back the noise the *unconditional* model
    sees. (Plain CFG with Euler renoises with the guided prediction's noise: x - D_lam.) It is
    the same as Euler with CFG at w(sigma_i) = lam sigma_i / (sigma_i - sigma_{i+1})
    (:func:`course.schedules.cfgpp_scale`).
    lam = 0 is the unconditional sampler; the paper finds lam in [0, 1] acting like CFG's w in
    [1, 12.5] (at lam = 1 the step already guides: it moves to D_c but renoises with D_u's noise).
    Two D calls per step."""
    sigmas = check_sigmas(sigmas)
    traj = [x]
    for i in tqdm(range(len(sigmas) - 1), disable=not progress, desc="cfgpp_euler"):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        D_c, D_u = _cfg_pair(D, x, s, y, i)
        x = D_u + lam * (D_c - D_u) + s_next * (x - D_u) / s
        traj.append(x)
    return (x, torch.stack(traj)) if trajectory else x


def cfgpp_ddim(D, lam, x_T, abar, y, *, steps=50, trajectory=False, progress=False):
    """CFG++ in the DDIM form (eta = 0) on ``steps`` evenly spaced timesteps of ``abar`` [T]:

        x_prev = sqrt(abar_prev) x0_lam + sqrt(1 - abar_prev) eps_u,

    which in the VE variable x / sqrt(abar) is :func:`cfgpp_euler` on sigma = sqrt((1 - abar) / abar).
    ``x_T`` ~ N(0, I) (VP variable); returns the VP sample at abar = 1, i.e. x0."""
    abar = _check_table(abar, "abar")
    ts = torch.linspace(len(abar) - 1, 0, steps).round().long().tolist()
    sig = [float(cv.sigma_from_abar(abar[t].item())) for t in ts] + [0.0]
    return cfgpp_euler(D, lam, x_T / abar[ts[0]].sqrt().item(), torch.tensor(sig, dtype=torch.float64), y,
                       trajectory=trajectory, progress=progress)


def _vp_eps(D, x_t, abar_t, y, step=None):
    """eps_theta(x_t, t) of any denoiser, through the bridge: x = x_t / sqrt(abar), sigma = sqrt((1-abar)/abar)."""
    sigma = float(cv.sigma_from_abar(abar_t))
    x = x_t / abar_t**0.5
    return cv.eps_from_x0(x, _call(D, x, sigma, y, step), sigma), x


def _check_table(values, name):
    """A VP table (betas or abar) [T]: 1-D, finite, every entry strictly inside (0, 1)."""
    v = torch.as_tensor(values).to(torch.float64)
    if v.ndim != 1 or len(v) < 1:
        raise ValueError(f"{name} must be a 1-D table [T]; got shape {list(v.shape)}")
    if not torch.isfinite(v).all() or (v <= 0).any() or (v >= 1).any():
        raise ValueError(f"every entry of {name} must lie strictly between 0 and 1; got min {v.min():.4g}, max {v.max():.4g}")
    return v


def ddpm(D, x_T, betas, y=None, *, generator=None, trajectory=False, progress=False):
    """The seed's Algorithm 2 (ancestral sampling), for t = T, ..., 1:

        z ~ N(0, I) if t > 1 else 0
        x_{t-1} = 1/sqrt(alpha_t) (x_t - (1 - alpha_t)/sqrt(1 - abar_t) eps_theta(x_t, t)) + sigma_t z

    with sigma_t^2 = beta_t. ``x_T`` [N, ...] ~ N(0, I) (VP variable); ``betas`` [T] with
    betas[t - 1] = beta_t. eps_theta comes from D through the bridge (conversions module).
    """
    betas = _check_table(betas, "betas")
    abar = cv.alphas_cumprod(betas)
    x = x_T
    traj = [x_T / abar[-1].sqrt().item()]
    for t in tqdm(range(len(betas), 0, -1), disable=not progress, desc="ddpm"):
        beta, ab = betas[t - 1].item(), abar[t - 1].item()
        eps, _ = _vp_eps(D, x, ab, y, len(betas) - t)
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
    abar = _check_table(abar, "abar")
    if not (isinstance(eta, (int, float)) and math.isfinite(eta) and eta >= 0):
        raise ValueError(f"eta must be a finite number >= 0 (0: deterministic DDIM, 1: DDPM-like); got {eta!r}")
    if (abar[1:] > abar[:-1]).any():
        raise ValueError("abar must not increase with t (abar_t = prod of (1 - beta_s)); got an increasing table")
    if int(steps) != steps or not 1 <= steps <= len(abar):
        raise ValueError(f"steps must be a whole number between 1 and T = {len(abar)}; got {steps}")
    ts = torch.linspace(len(abar) - 1, 0, steps).round().long().tolist()
    x = x_T
    traj = [x_T / abar[ts[0]].sqrt().item()]
    for i in tqdm(range(len(ts)), disable=not progress, desc="ddim"):
        ab = abar[ts[i]].item()
        ab_prev = abar[ts[i + 1]].item() if i + 1 < len(ts) else 1.0
        eps, x_ve = _vp_eps(D, x, ab, y, i)
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
    if isinstance(n, bool) or not isinstance(n, (int, float)) or int(n) != n or n < 1:
        raise ValueError(f"n must be a whole number >= 1; got {n!r}")
    n = int(n)
    shape = (n, dim) if isinstance(dim, int) else (n, *dim)
    g = torch.Generator().manual_seed(seed)
    sigmas = edm_sigmas(steps, sigma_min, sigma_max, rho)
    x = torch.randn(shape, generator=g, dtype=dtype) * sigmas[0].item()
    if y is not None:
        y = cv.as_labels(y).reshape(-1)
        if y.numel() == 1:
            y = y.expand(n)
        elif y.numel() != n:
            raise ValueError(f"y must be one label or [n] = [{n}] labels; got {y.numel()}")
    with torch.no_grad():
        return edm_heun(D, x, sigmas, y, trajectory=trajectory, progress=progress)
