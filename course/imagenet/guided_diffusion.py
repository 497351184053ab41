"""guided-diffusion's own sampler (Dhariwal & Nichol 2021, https://arxiv.org/abs/2105.05233).

The ADM 64x64 results, and guided-diffusion's README command for classifier sampling, use this
sampler, not EDM's Heun: ancestral steps with the model's *learned* variances on a *respaced*
subset of the 1000 training timesteps, and classifier guidance as a *shift of the mean*.

* Respacing (``--timestep_respacing 250``): keep K of the T timesteps, evenly strided, and
  recompute the betas from the kept abar: beta'_i = 1 - abar_{t_i} / abar_{t_(i-1)}.
* Learned variance (``learn_sigma``): the UNet's last 3 channels v in [-1, 1] interpolate
  log Sigma = (v + 1)/2 log beta_t + (1 - (v + 1)/2) log beta~_t,
  beta~_t = beta_t (1 - abar_(t-1)) / (1 - abar_t) (the posterior variance, its t = 0 value
  replaced by t = 1's before the log, as guided-diffusion clips it).
* The mean: x0 = sqrt(1/abar_t) x_t - sqrt(1/abar_t - 1) eps, clipped to [-1, 1];
  mu = c1 x0 + c2 x_t, c1 = beta_t sqrt(abar_(t-1)) / (1 - abar_t),
  c2 = (1 - abar_(t-1)) sqrt(alpha_t) / (1 - abar_t).
* Classifier guidance (``condition_mean``): mu' = mu + s Sigma grad_{x_t} log p(y | x_t, t),
  s = ``classifier_scale``; then x_(t-1) = mu' + sqrt(Sigma) z (no noise at the last step).

This is why the guidance strengths of the two samplers differ: the score form used with EDM
Heun (D + s sigma^2 grad) moves x0 by s sigma^2 grad in the VE variable, while the mean shift
moves x_t by s Sigma grad, and Sigma is at most beta_t. At t = 999 the first is about 100 times
larger in one step (issue "ImageNet-64 presets"). Network calls: one UNet call per step, plus
one classifier forward and backward per step when guided (250 steps: 250 + 250).
"""
from dataclasses import dataclass

import torch
from tqdm import tqdm

from .. import conversions as cv
from .. import samplers


def space_timesteps(T: int, count: int) -> list:
    """The kept timesteps of guided-diffusion's ``space_timesteps(T, str(count))`` (one section):
    evenly strided from 0 to T - 1, rounded."""
    if not 1 <= count <= T:
        raise ValueError(f"the number of respaced steps must lie in 1..{T}; got {count}")
    stride = 1 if count == 1 else (T - 1) / (count - 1)
    taken, cur = [], 0.0
    for _ in range(count):  # accumulated as guided-diffusion does, so the rounding is the same
        taken.append(round(cur))
        cur += stride
    return sorted(set(taken))


@dataclass
class Schedule:
    """A respaced VP schedule: everything a step needs, as float64 tensors [K] (K kept steps)."""
    timesteps: torch.Tensor  # [K] the original timestep of each kept step (what the networks are given)
    betas: torch.Tensor
    abar: torch.Tensor
    abar_prev: torch.Tensor
    posterior_log_variance: torch.Tensor  # log beta~_t, clipped at t = 0
    coef_x0: torch.Tensor  # c1
    coef_xt: torch.Tensor  # c2

    @classmethod
    def respaced(cls, betas: torch.Tensor, count: int):
        abar_all = cv.alphas_cumprod(betas.to(torch.float64))
        kept = space_timesteps(len(betas), count)
        abar = abar_all[kept]
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        new_betas = 1 - abar / abar_prev
        post_var = new_betas * (1 - abar_prev) / (1 - abar)
        post_log = torch.log(torch.cat([post_var[1:2], post_var[1:]])) if len(kept) > 1 else torch.log(new_betas)
        return cls(torch.tensor(kept), new_betas, abar, abar_prev, post_log,
                   new_betas * abar_prev.sqrt() / (1 - abar), (1 - abar_prev) * (1 - new_betas).sqrt() / (1 - abar))


def p_mean_variance(unet, x_t, i, sched: Schedule, y=None, clip=True):
    """(mean [N, C, H, W], log variance [N, C, H, W], x0) of step i (0-based index of the kept steps)
    from the 2C output channels of ``unet(x_t, t, y)``: eps, then the variance interpolation v."""
    t = int(sched.timesteps[i])
    out = unet(x_t, torch.full((x_t.shape[0],), t, device=x_t.device), y)
    C = x_t.shape[1]
    if out.shape[1] != 2 * C:
        raise ValueError(f"guided-diffusion's sampler needs a learned-variance model (2 x {C} output channels); got {out.shape[1]}")
    eps, v = out[:, :C], out[:, C:]
    max_log = torch.log(sched.betas[i]).item()
    min_log = sched.posterior_log_variance[i].item()
    frac = (v + 1) / 2
    log_var = frac * max_log + (1 - frac) * min_log
    ab = sched.abar[i].item()
    x0 = (1 / ab) ** 0.5 * x_t - (1 / ab - 1) ** 0.5 * eps
    if clip:
        x0 = x0.clamp(-1, 1)
    mean = sched.coef_x0[i].item() * x0 + sched.coef_xt[i].item() * x_t
    return mean, log_var, x0


def classifier_gradient(classifier, x_t, t, y, scale):
    """s grad_{x_t} log p(y | x_t, t) for guided-diffusion's noise-aware classifier(x_t, t) -> logits."""
    with torch.enable_grad():
        x_in = x_t.detach().requires_grad_(True)
        logp = torch.log_softmax(classifier(x_in, torch.full((x_t.shape[0],), t, device=x_t.device)), dim=-1)
        selected = logp.gather(1, cv.as_labels(y).to(x_t.device).reshape(-1, 1)).sum()
        (g,) = torch.autograd.grad(selected, x_in)
    return g * scale


def p_sample(unet, x_t, i, sched: Schedule, y=None, classifier=None, scale=1.0, noise=None):
    """One ancestral step x_t -> x_(t-1) (guided-diffusion's ``p_sample`` with ``condition_mean``)."""
    mean, log_var, _ = p_mean_variance(unet, x_t, i, sched, y)
    if classifier is not None and scale != 0:
        mean = mean + log_var.exp() * classifier_gradient(classifier, x_t, int(sched.timesteps[i]), y, scale)
    if i == 0:
        return mean
    return mean + (0.5 * log_var).exp() * noise


def dhariwal_nichol(unet, x_T, y=None, *, steps=250, classifier=None, scale=1.0, betas=None, generator=None, progress=False):
    """Sample with guided-diffusion's sampler: ``x_T`` [N, C, H, W] ~ N(0, I), ``steps`` respaced
    timesteps of the model's schedule (cosine, T = 1000, by default), optional classifier guidance
    of strength ``scale`` (``classifier_scale``). Returns x_0 in [-1, 1]. Noise comes from
    ``generator`` (CPU; one generator, or a list of one per row: :func:`course.samplers.randn`) so
    that a run is reproducible on any device."""
    sched = Schedule.respaced(cv.cosine_betas(1000) if betas is None else betas, steps)
    x = x_T
    for i in tqdm(range(len(sched.timesteps) - 1, -1, -1), disable=not progress, desc="dhariwal_nichol"):
        noise = samplers.randn(x.shape, generator, x.dtype).to(x.device) if i > 0 else None
        x = p_sample(unet, x, i, sched, y, classifier, scale, noise)
        if not torch.isfinite(x).all():
            raise FloatingPointError(f"NaN or inf at respaced step {i} (timestep {int(sched.timesteps[i])})")
    return x


def calls(steps, guided):
    """Network evaluations of :func:`dhariwal_nichol`: (UNet calls, classifier forward+backward passes)."""
    return steps, (steps if guided else 0)
