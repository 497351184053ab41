"""Training: the seed's Algorithm 1 (eps loss), the EDM loss, the exact-target loss, label
dropout, and two EMAs (a constant decay, and EDM2's power function).

A data source is any callable ``draw(n, generator) -> (x0 [n, ...], y [n] or None)``;
:func:`mixture_source` makes one from a Gaussian mixture.
"""
import copy
import math

import torch
from tqdm import tqdm


def mixture_source(gm, labelled=True):
    """Draw (x0, y) from a GaussianMixture: y is each sample's component label (None if unlabelled)."""
    def draw(n, generator=None):
        x, k = gm.sample(n, generator=generator, return_components=True)
        return x, (gm.labels[k] if labelled and gm.labels is not None else None)
    return draw


def eps_loss(eps_net, x0, abar, y=None, generator=None):
    """Algorithm 1, one batch: t ~ U{1..T}, eps ~ N(0, I),
    loss = || eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t) ||^2 (mean over batch and dims).
    ``abar`` [T] with abar[t - 1] = abar_t; the network sees the 0-based index t - 1."""
    n = x0.shape[0]
    t = torch.randint(1, len(abar) + 1, (n,), generator=generator)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    ab = abar[t - 1].to(x0.dtype).reshape(-1, *([1] * (x0.ndim - 1)))
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    return ((eps - eps_net(x_t, (t - 1).to(x0.dtype), y)) ** 2).mean()


def edm_loss(D, x0, y=None, P_mean=-1.2, P_std=1.2, sigma_data=0.5, generator=None):
    """EDM's loss, one batch: ln sigma ~ N(P_mean, P_std^2), n ~ N(0, I),
    loss = lambda(sigma) || D(x0 + sigma n; sigma, y) - x0 ||^2, lambda = (s^2 + sd^2)/(s sd)^2."""
    n = x0.shape[0]
    shape = (n, *([1] * (x0.ndim - 1)))
    sigma = (torch.randn(n, generator=generator, dtype=x0.dtype) * P_std + P_mean).exp()
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    err = (D(x0 + sigma.reshape(shape) * noise, sigma, y) - x0) ** 2
    return (weight.reshape(shape) * err).mean()


def exact_loss(D, gm, x0, y=None, P_mean=-2.3, P_std=1.5, target="exact", generator=None):
    """The autoguidance paper's toy loss, one batch: regress onto the *exact* denoiser of the
    mixture ``gm`` at the noisy point, instead of onto x0 (possible only where the score is known):

        ln sigma ~ N(P_mean, P_std^2),  x = x0 + sigma n,
        loss = sigma^2 || score*(x; sigma) - score_D(x; sigma) ||^2 = || D*(x; sigma) - D(x; sigma) ||^2 / sigma^2

    averaged over batch and dimensions. D* = E[x0 | x] removes the variance that sampling x0 adds
    to denoising score matching; labels ``y`` (-1 = unconditional) select class mixtures of ``gm``.
    ``target="x0"`` is the same loss with x0 in place of D* - denoising score matching with the
    same noise levels and weights, for comparing the two (lesson 1): its expected value is the exact
    loss plus E||D* - x0||^2 / sigma^2, a constant no network can remove, and its gradients are noisier."""
    if target not in ("exact", "x0"):
        raise ValueError(f"target must be 'exact' (the mixture's denoiser) or 'x0' (denoising score matching); got {target!r}")
    n = x0.shape[0]
    sigma = (torch.randn(n, generator=generator, dtype=x0.dtype) * P_std + P_mean).exp()
    x = x0 + sigma.reshape(-1, *([1] * (x0.ndim - 1))) * torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    if target == "exact":
        target = gm.training_target(x, sigma, y, dtype=x0.dtype)  # one sigma per row, exact to the batch's precision
    else:
        target = x0
    return (((D(x, sigma, y) - target) ** 2).mean(dim=tuple(range(1, x0.ndim))) / sigma**2).mean()


def excess_loss(D, gm, x, sigma, y=None):
    """E ||D(x; sigma) - D*(x; sigma)||^2 / sigma^2 (mean over rows and dims) on given noisy points
    x [N, d] with noise levels sigma [N]: how far a denoiser is from the mixture's exact one, in the
    units of :func:`exact_loss` (0 for the exact denoiser)."""
    with torch.no_grad():
        return (((D(x, sigma, y) - gm.training_target(x, sigma, y, dtype=x.dtype)) ** 2).mean(1) / sigma**2).mean().item()


def gradient_variance(model, batch_loss, draws=8):
    """The noise in a training step: the mean squared distance of ``draws`` mini-batch gradients
    (``batch_loss(i)`` is the loss of the i-th batch) from their average, summed over parameters
    (the trace of the gradient's covariance). The parameters are not changed."""
    grads = []
    for i in range(draws):
        model.zero_grad(set_to_none=True)
        batch_loss(i).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None]))
    model.zero_grad(set_to_none=True)
    g = torch.stack(grads)
    return ((g - g.mean(0)) ** 2).sum(1).mean().item() * draws / (draws - 1)


def drop_labels(y, p, generator=None):
    """Label dropout for CFG: each label becomes -1 (the null class) with probability p."""
    if y is None or p <= 0:
        return y
    drop = torch.rand(y.shape, generator=generator) < p
    return torch.where(drop, torch.full_like(y, -1), y)


class EMA:
    """Exponential moving average of a model's parameters: theta_ema <- beta theta_ema + (1 - beta) theta."""

    def __init__(self, model, beta=0.99):
        self.beta = beta
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.steps = 0

    def decay(self):
        """beta for the current update (constant here)."""
        return self.beta

    @torch.no_grad()
    def update(self, model):
        self.steps += 1
        beta = self.decay()
        for p_ema, p in zip(self.model.parameters(), model.parameters()):
            p_ema.lerp_(p, 1 - beta)


def power_ema_gamma(std: float) -> float:
    """EDM2's power-function EMA exponent gamma for a relative std (Karras et al. 2024, "Analyzing
    and improving the training dynamics"): std^2 = (gamma + 1) / ((gamma + 2)^2 (gamma + 3)),
    solved by bisection. std must lie in (0, 0.2887): gamma = 0, the longest average, has 0.2887."""
    rel = lambda g: ((g + 1) / ((g + 2) ** 2 * (g + 3))) ** 0.5  # noqa: E731 - decreasing in g
    if not 0 < std < rel(0.0):
        raise ValueError(f"the EMA's relative std must lie in (0, {rel(0.0):.4f}); got {std}")
    lo, hi = 0.0, 1e9
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if rel(mid) > std else (lo, mid)
    return (lo + hi) / 2


class PowerEMA(EMA):
    """EDM2's power-function EMA: at update t (1, 2, ...) beta_t = (1 - 1/t)^(gamma + 1), so the
    average weighs step s of t by about s^gamma; gamma from the relative std (:func:`power_ema_gamma`).
    Its length grows with training, so early steps do not dominate a long run."""

    def __init__(self, model, std=0.010):
        super().__init__(model, beta=None)
        self.std, self.gamma = std, power_ema_gamma(std)

    def decay(self):
        return (1 - 1 / self.steps) ** (self.gamma + 1)


def train(model, draw, loss="edm", steps=2000, batch=1024, lr=1e-2, label_dropout=0.0, ema=0.99,
          seed=0, progress=True, loss_kwargs=None, abar=None, mixture=None, ema_std=None, betas=(0.9, 0.999),
          monitor=None, monitor_every=1000, drop=drop_labels):
    """Train ``model`` with Adam and the autoguidance paper's schedule lr / sqrt(max(step/512, 1)).

    loss: "edm" (model is a denoiser D), "eps" (an eps-network; pass ``abar``) or "exact" (a
    denoiser regressed onto the exact denoiser of ``mixture``: :func:`exact_loss`).
    EMA: a constant decay ``ema`` (None: none), or EDM2's power function with relative std
    ``ema_std`` (the paper's toy: 0.010), which takes precedence. ``betas``: Adam's (the paper's
    toy uses (0.9, 0.99)). ``monitor(step, model)``, if given, is called every ``monitor_every``
    steps with the model to sample from (the EMA copy); training stops early when it returns True.
    ``drop(y, label_dropout, generator)``: the label dropout (default :func:`drop_labels`; a lesson
    passes a learner's own). Returns the EMA copy (the one to sample from; the model itself if there is no EMA) and the
    list of losses.
    """
    if loss not in ("edm", "eps", "exact"):
        raise ValueError(f"loss must be 'edm', 'eps' or 'exact'; got {loss!r}")
    if loss == "eps" and abar is None:
        raise ValueError("the eps loss needs the schedule: pass abar=alphas_cumprod(betas)")
    if loss == "exact" and mixture is None:
        raise ValueError("the exact loss regresses onto a known denoiser: pass mixture=GaussianMixture(...)")
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=tuple(betas))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: 1 / max(it / 512, 1) ** 0.5)
    avg = PowerEMA(model, ema_std) if ema_std else (EMA(model, ema) if ema else None)
    losses = []
    model.train()
    for step in tqdm(range(steps), disable=not progress, desc="training", mininterval=1.0):
        x0, y = draw(batch, g)
        y = drop(y, label_dropout, g) if y is not None and label_dropout > 0 else y
        if loss == "edm":
            value = edm_loss(model, x0, y, generator=g, **(loss_kwargs or {}))
        elif loss == "exact":
            value = exact_loss(model, mixture, x0, y, generator=g, **(loss_kwargs or {}))
        else:
            value = eps_loss(model, x0, abar, y, generator=g)
        opt.zero_grad(set_to_none=True)
        if not math.isfinite(value.item()):
            raise FloatingPointError(f"training diverged: the loss is {value.item()} at step {step} of {steps}. "
                                     f"Try a smaller learning rate (lr={lr}) or check the data for NaN/inf.")
        value.backward()
        opt.step()
        sched.step()
        if avg:
            avg.update(model)
        losses.append(value.item())
        if monitor is not None and (step + 1) % monitor_every == 0:
            sampled = avg.model if avg else model
            model.eval()
            stop = monitor(step + 1, sampled)
            model.train()
            if stop:
                break
    model.eval()
    return (avg.model if avg else model), losses
