"""Guiders since CFG (lesson 8; each class cites its paper), each in the one interface of
:mod:`course.guiders`: a guided denoiser D_w(x, sigma, y) built from denoisers, w = 1 = none.

Notation: D_c = D(x, sigma, y), D_u = D(x, sigma, NULL), delta = D_c - D_u; scores s = (D - x) / sigma^2
and the EDM velocity (the eps-prediction) v = (x - D) / sigma convert in one place (Tweedie).

* :class:`APG`        - adaptive projected guidance: delta split into parts parallel and
  orthogonal to D_c, the parallel part (the one that over-saturates) down-weighted; optional
  norm threshold and negative momentum (Sadat, Hilliges & Weber, ICLR 2025).
* :class:`CFGRescale` - rescale the CFG output to the conditional output's std (Lin et al. 2024).
* :class:`CFGZeroStar` - scale the unconditional velocity by its least-squares fit s* to the
  conditional one; zero velocity at the first (highest) noise levels (Fan et al. 2025).
* :class:`TCFG`       - tangential damping: keep only the unconditional score's component along
  the first singular direction of [s_c; s_u] (Kwon et al., CVPR 2025).
* :class:`FDG`        - frequency-decoupled guidance: a one-level Laplacian pyramid, its own w per
  band (Sadat et al. 2025). Images only.
* :class:`MamboG`     - a per-sample w that falls where the two predictions disagree (Zhu et al.).
* :class:`SEG`        - smoothed-energy guidance: the perturbed branch blurs attention queries
  (Hong 2024) - PAG with ``mode="seg"``.
* :class:`SkipLayerGuidance` - the weak branch is the same network with named blocks skipped
  (SLG / STG, 2024).
* :class:`TSG`        - time-step guidance: the weak branch gets a perturbed noise embedding
  (Sadat et al., ICLR 2025).

* :class:`LossGuidance` - guidance by any differentiable loss on the denoiser's estimate of x0,
  the loss taking the place of -log p(y | x) (Chung et al. 2023, DPS; Bansal et al. 2024,
  universal guidance).

CFG++ is a sampler here (:func:`course.samplers.cfgpp_euler`): it renoises with the unconditional
prediction. On Euler steps that is CFG with a scale that depends on the step,
:func:`course.schedules.cfgpp_scale`. Scale schedules (interval, zero-init, start/stop fractions,
CFG++'s) are in :mod:`course.schedules`.
"""
import math
from contextlib import contextmanager

import torch

from .conversions import expand_sigma, flow_velocity_from_x0, x0_from_flow_velocity
from .guiders import PAG, _check_w, _labels, _scale, conditional_pair


def _dot(a, b):
    """Per-sample inner product over all but the batch axis, shaped to broadcast: [N, 1, ...]."""
    return (a * b).flatten(1).sum(1).reshape(-1, *([1] * (a.ndim - 1)))


def apg_project(delta, D_c):
    """(delta_par, delta_orth): delta [N, ...] split into its part along D_c (per sample) and the rest."""
    par = _dot(delta, D_c) / _dot(D_c, D_c).clamp(min=1e-12) * D_c
    return par, delta - par


def cfg_zero_scale(v_c, v_u):
    """CFG-Zero*'s s* = <v_c, v_u> / (||v_u||^2 + 1e-8): [N], one per sample."""
    return (v_c * v_u).flatten(1).sum(1) / ((v_u * v_u).flatten(1).sum(1) + 1e-8)


class APG:
    """Adaptive projected guidance (Sadat, Hilliges & Weber, ICLR 2025), in x0 space:

        delta = D_c - D_u;  running <- delta + beta * running;  delta <- running     (momentum, beta <= 0)
        delta <- delta * min(1, r / ||delta||)                                          (norm threshold)
        delta_par = (<delta, D_c> / ||D_c||^2) D_c,  delta_orth = delta - delta_par
        D_w = D_c + (w - 1) (delta_orth + eta * delta_par)

    eta = 1, r = inf, beta = 0 is CFG exactly. The paper recommends eta = 0 (drop the parallel
    part, which raises saturation); SDXL: beta = -0.5, r = 15. Momentum makes the guider depend
    on the previous call; it resets itself when sigma grows (a new trajectory) or the batch
    changes, and :meth:`reset` resets it by hand. ``project`` (delta, D_c) -> (par, orth) replaces
    :func:`apg_project` (lesson 8 passes a learner's own)."""

    def __init__(self, D, w, eta=0.0, r=math.inf, beta=0.0, project=None):
        _check_w(w)
        if not r > 0:  # also false for NaN
            raise ValueError(f"the norm threshold r must be > 0 (inf: none); got {r}")
        if not beta <= 0:
            raise ValueError(f"APG's momentum beta must be <= 0 (the paper's is negative, e.g. -0.5); got {beta}")
        if not math.isfinite(eta):
            raise ValueError(f"APG's eta (the weight of the parallel part) must be finite; got {eta}")
        self.D, self.w, self.eta, self.r, self.beta = D, w, eta, r, beta
        self.project = apg_project if project is None else project
        self.reset()

    def reset(self):
        self._running, self._last_sigma = None, math.inf

    def __call__(self, x, sigma, y=None):
        D_c, D_u = conditional_pair(self.D, x, sigma, y)
        delta = D_c - D_u
        s = float(torch.as_tensor(sigma).reshape(-1)[0])
        if self.beta != 0:
            if self._running is None or self._running.shape != delta.shape or s > self._last_sigma:
                self._running = torch.zeros_like(delta)
            self._running = delta + self.beta * self._running
            delta = self._running
            self._last_sigma = s
        if math.isfinite(self.r):
            norm = delta.flatten(1).norm(dim=1).reshape(-1, *([1] * (delta.ndim - 1)))
            delta = delta * torch.clamp(self.r / norm.clamp(min=1e-12), max=1.0)
        par, orth = self.project(delta, D_c)
        return D_c + (_scale(self.w, sigma, x) - 1) * (orth + self.eta * par)


class CFGRescale:
    """CFG rescale (Lin et al. 2024, "Common diffusion noise schedules and sample steps are flawed"):

        D_cfg = D_u + w (D_c - D_u);  D_w = phi * D_cfg * std(D_c) / std(D_cfg) + (1 - phi) * D_cfg

    stds per sample over all dimensions; phi = 0.7 in the paper, phi = 0 is CFG."""

    def __init__(self, D, w, phi=0.7):
        _check_w(w)
        if not 0 <= phi <= 1:
            raise ValueError(f"phi must lie in [0, 1]; got {phi}")
        self.D, self.w, self.phi = D, w, phi

    def __call__(self, x, sigma, y=None):
        D_c, D_u = conditional_pair(self.D, x, sigma, y)
        D_cfg = D_u + _scale(self.w, sigma, x) * (D_c - D_u)
        std = lambda t: t.flatten(1).std(1).reshape(-1, *([1] * (t.ndim - 1)))
        return self.phi * D_cfg * std(D_c) / std(D_cfg).clamp(min=1e-12) + (1 - self.phi) * D_cfg


class CFGZeroStar:
    """CFG-Zero* (Fan et al. 2025, <https://arxiv.org/abs/2503.18886>), on the flow-matching velocity
    the paper guides, v = eps - x0 = (x - D) / sigma - D (:func:`course.conversions.flow_velocity_from_x0`):

        s* = <v_c, v_u> / (||v_u||^2 + 1e-8)   (per sample);   v = s* v_u + w (v_c - s* v_u)

    and zero velocity while sigma > ``zero_above`` - the paper's "zero-init" of the first ~4% of
    steps (None: off). Zero velocity in flow matching is D = x / (1 + sigma) here (the sample
    stays where it is in the flow's variable x_t), not D = x. s* = 1 gives CFG exactly (v is
    affine in D). ``scale_fn`` replaces :func:`cfg_zero_scale` (lesson 8 passes a learner's own)."""

    def __init__(self, D, w, zero_above=None, scale_fn=None):
        _check_w(w)
        self.D, self.w, self.zero_above = D, w, zero_above
        self.scale_fn = cfg_zero_scale if scale_fn is None else scale_fn

    def __call__(self, x, sigma, y=None):
        if (torch.as_tensor(sigma) <= 0).any():
            raise ValueError("CFG-Zero* works on the velocity (x - D) / sigma - D, which needs sigma > 0; "
                             "samplers never call a denoiser at sigma = 0")
        D_c, D_u = conditional_pair(self.D, x, sigma, y)
        v_c, v_u = flow_velocity_from_x0(x, D_c, sigma), flow_velocity_from_x0(x, D_u, sigma)
        s_star = self.scale_fn(v_c, v_u).reshape(-1, *([1] * (x.ndim - 1)))
        v = s_star * v_u + _scale(self.w, sigma, x) * (v_c - s_star * v_u)
        if self.zero_above is not None:
            v = torch.where(expand_sigma(sigma, x) > self.zero_above, torch.zeros_like(v), v)
        return x0_from_flow_velocity(x, v, sigma)


class TCFG:
    """Tangential-damping CFG (Kwon et al., CVPR 2025). Per sample, the 2 x n matrix [s_c; s_u]
    of flattened scores has right-singular vectors V; keep only s_u's component along the first,
    v1 (the direction the two scores share), then guide as CFG:

        s_u' = <s_u, v1> v1;   s_w = s_u' + w (s_c - s_u');   D_w = x + sigma^2 s_w"""

    def __init__(self, D, w):
        _check_w(w)
        self.D, self.w = D, w

    def __call__(self, x, sigma, y=None):
        D_c, D_u = conditional_pair(self.D, x, sigma, y)
        sig2 = expand_sigma(sigma, x) ** 2
        s_c, s_u = (D_c - x) / sig2, (D_u - x) / sig2
        if not (torch.isfinite(s_c).all() and torch.isfinite(s_u).all()):
            raise FloatingPointError("TCFG: the scores are NaN or infinite (sigma = 0, or a NaN from the denoiser), "
                                     "so their singular vectors are undefined")
        M = torch.stack([s_c.flatten(1), s_u.flatten(1)], 1)  # [N, 2, n]
        _, _, Vh = torch.linalg.svd(M, full_matrices=False)
        v1 = Vh[:, 0]  # [N, n]
        s_u_t = ((s_u.flatten(1) * v1).sum(1, keepdim=True) * v1).reshape(s_u.shape)
        return x + sig2 * (s_u_t + _scale(self.w, sigma, x) * (s_c - s_u_t))


_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16  # the 5-tap Gaussian of Burt & Adelson's pyramid


def _blur5(img):
    """The pyramid's 5x5 Gaussian ([1, 4, 6, 4, 1]/16 in each direction), reflect-padded borders."""
    C = img.shape[1]
    k = torch.outer(_BINOMIAL, _BINOMIAL).to(img.dtype).to(img.device).expand(C, 1, 5, 5)
    return torch.nn.functional.conv2d(torch.nn.functional.pad(img, (2, 2, 2, 2), mode="reflect"), k, groups=C)


def pyr_down(img):
    """Blur, then halve with bilinear resampling (the Laplacian pyramid's reduce step, as kornia's
    ``pyrdown``, which the FDG paper's code uses)."""
    H, W = img.shape[-2:]
    return torch.nn.functional.interpolate(_blur5(img), size=(H // 2, W // 2), mode="bilinear", align_corners=False)


def pyr_up(img):
    """Double with bilinear resampling, then blur (the pyramid's expand step, kornia's ``pyrup``)."""
    H, W = img.shape[-2:]
    return _blur5(torch.nn.functional.interpolate(img, size=(2 * H, 2 * W), mode="bilinear", align_corners=False))


def laplacian_split(img):
    """A two-level Laplacian pyramid of images [N, C, H, W] (H, W even, at least 4), as the FDG
    paper builds it: low = pyr_up(pyr_down(img)) (the coarse level, brought back to full size),
    high = img - low, so low + high = img exactly."""
    if img.ndim != 4 or img.shape[-1] % 2 or img.shape[-2] % 2 or min(img.shape[-2:]) < 4:
        raise ValueError(f"FDG splits images [N, C, H, W] with even H and W of at least 4; got shape {list(img.shape)}")
    low = pyr_up(pyr_down(img))
    return low, img - low


class FDG:
    """Frequency-decoupled guidance (Sadat et al. 2025, <https://arxiv.org/abs/2506.19713>): split
    D_c and D_u into low and high frequencies with a two-level Laplacian pyramid
    (:func:`laplacian_split`) and guide each with its own scale:

        D_w = [L_u + w_low (L_c - L_u)] + [H_u + w_high (H_c - H_u)]

    (the paper guides the pyramid's coarse level at half size and expands it; the expand step is
    linear, so guiding its expanded copy is the same)

    w_low < w_high: strong guidance only where it sharpens details, weak where it shifts colours
    and composition (EDM2-S: CFG w 3 against FDG (1, 3)). w_low = w_high = w is CFG exactly.
    With ``guide`` (a second denoiser) the pair is autoguidance's instead of CFG's: D_c is
    D(x, sigma, y) and D_u is guide(x, sigma, y)."""

    def __init__(self, D, w_low, w_high, guide=None):
        _check_w(w_low), _check_w(w_high)
        self.D, self.w_low, self.w_high, self.guide = D, w_low, w_high, guide

    def __call__(self, x, sigma, y=None):
        if self.guide is None:
            D_c, D_u = conditional_pair(self.D, x, sigma, y)
        else:
            D_c, D_u = self.D(x, sigma, y), self.guide(x, sigma, y)
        (L_c, H_c), (L_u, H_u) = laplacian_split(D_c), laplacian_split(D_u)
        return (L_u + _scale(self.w_low, sigma, x) * (L_c - L_u)) + (H_u + _scale(self.w_high, sigma, x) * (H_c - H_u))


class MamboG:
    """MAMBO-G (Zhu et al. 2025, "Magnitude-Aware Mitigation for Boosted Guidance",
    <https://arxiv.org/abs/2508.03442>): CFG with a per-sample scale that shrinks where the
    guidance update is large relative to the unconditional prediction, measured - as the paper
    and its diffusers guider do - on the model's flow-matching velocity v = (x - D) / sigma - D:

        r = ||v_c - v_u|| / ||v_u||,   w_eff = 1 + (w - 1) exp(-alpha r),   alpha = 8,

    then D_w = D_u + w_eff (D_c - D_u) (v is affine in D, so this is the paper's velocity update).
    Large, early corrections are damped and small, late ones kept. alpha = 0 is CFG."""

    def __init__(self, D, w, alpha=8.0):
        _check_w(w)
        if not (math.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"MAMBO-G's alpha must be a finite number >= 0 (0: CFG); got {alpha}")
        self.D, self.w, self.alpha = D, w, alpha

    def effective_w(self, D_c, D_u, sigma, x):
        """[N, 1, ...] the per-sample scale."""
        v_c, v_u = flow_velocity_from_x0(x, D_c, sigma), flow_velocity_from_x0(x, D_u, sigma)
        ratio = (v_c - v_u).flatten(1).norm(dim=1) / v_u.flatten(1).norm(dim=1).clamp(min=1e-12)
        damp = torch.exp(-self.alpha * ratio).reshape(-1, *([1] * (x.ndim - 1)))
        return 1 + (_scale(self.w, sigma, x) - 1) * damp

    def __call__(self, x, sigma, y=None):
        D_c, D_u = conditional_pair(self.D, x, sigma, y)
        return D_u + self.effective_w(D_c, D_u, sigma, x) * (D_c - D_u)


class SEG(PAG):
    """Smoothed-energy guidance (Hong 2024): the perturbed branch blurs the self-attention queries
    of ``layers`` with a Gaussian of std ``blur`` tokens (inf: every query is the mean query),
    which smooths the attention's energy landscape. Without CFG: D_p + w (D - D_p) (the paper's
    s = w - 1, default s = 3); with ``cfg``: D_u + cfg (D_c - D_u) + (w - 1) (D_c - D_p)."""

    def __init__(self, D, layers, w, blur=math.inf, cfg=None, batched=True):
        super().__init__(D, layers, w, cfg=cfg, batched=batched, mode="seg", blur=blur)


@contextmanager
def skip_blocks(model, names):
    """Within the block, each named submodule of ``model`` returns its input unchanged (as if the
    residual block were skipped). The blocks must map a tensor to one of the same shape."""
    modules = dict(model.named_modules())
    unknown = [n for n in names if n not in modules]
    if unknown or not names:
        raise ValueError(f"unknown block(s) {unknown or '(none given)'}; names are matched exactly. "
                         f"Some valid names: {sorted(n for n in modules if n)[:40]}")

    def hook(module, args, output):
        x = args[0]
        if not isinstance(output, torch.Tensor) or output.shape != x.shape:
            raise ValueError(f"cannot skip a block whose output shape {list(getattr(output, 'shape', []))} "
                             f"differs from its input's {list(x.shape)}")
        return x

    handles = [modules[n].register_forward_hook(hook) for n in names]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


class SkipLayerGuidance:
    """Skip-layer guidance (SLG / STG, 2024): the weak prediction D_skip is the same network with
    the blocks ``blocks`` skipped; D_w = D_skip + w (D - D_skip), or with ``cfg``:
    D_u + cfg (D_c - D_u) + (w - 1) (D_c - D_skip) (SD3.5: layers 7-9, scale 2.8)."""

    def __init__(self, D, blocks, w, cfg=None):
        _check_w(w)
        if cfg is not None:
            _check_w(cfg)
        with skip_blocks(D, list(blocks)):  # validates the names now, not at the first call
            pass
        self.D, self.blocks, self.w, self.cfg = D, list(blocks), w, cfg

    def __call__(self, x, sigma, y=None):
        D_c = self.D(x, sigma, y)
        with skip_blocks(self.D, self.blocks):
            D_skip = self.D(x, sigma, y)
        w = _scale(self.w, sigma, x)
        if self.cfg is None:
            return D_skip + w * (D_c - D_skip)
        D_u = self.D(x, sigma, _labels(None, x.shape[0], x.device))
        return D_u + _scale(self.cfg, sigma, x) * (D_c - D_u) + (w - 1) * (D_c - D_skip)


@contextmanager
def perturb_embedding(model, name, scale, alpha, sigma, generator):
    """Within the block, the output of the submodule ``name`` (a noise embedding) gets
    + scale * t^alpha * n, n ~ N(0, I) drawn from ``generator``, with t = sigma / (1 + sigma) per
    row: the paper's timestep normalised to [0, 1] (t = 1 is pure noise); this map from EDM's
    sigma is the course's choice (sigma = 1 -> t = 0.5, sigma = 80 -> 0.99)."""
    modules = dict(model.named_modules())
    if name not in modules:
        raise ValueError(f"unknown embedding module {name!r}. Some valid names: {sorted(n for n in modules if n)[:40]}")

    def hook(module, args, output):
        t = torch.as_tensor(sigma, dtype=output.dtype, device=output.device).reshape(-1)
        t = (t / (1 + t)).expand(output.shape[0]).reshape(-1, *([1] * (output.ndim - 1)))
        n = torch.randn(output.shape, generator=generator, dtype=output.dtype).to(output.device)
        return output + scale * t**alpha * n

    handle = modules[name].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


class TSG:
    """Time-step guidance (Sadat et al., ICLR 2025): the weak branch is the same network whose
    noise embedding (the module ``embedding``) is perturbed, t_emb + scale t^alpha n
    (t in [0, 1], see :func:`perturb_embedding`);
    D_w = D_p + w (D - D_p). The noise n comes from a hash of (x, sigma, seed), so the guider is a
    deterministic function of its inputs (see :func:`course.guiders.input_hash`)."""

    def __init__(self, D, embedding, w, scale=1.0, alpha=1.0, seed=0):
        _check_w(w)
        self.D, self.embedding, self.w, self.scale, self.alpha, self.seed = D, embedding, w, scale, alpha, seed
        with perturb_embedding(D, embedding, scale, alpha, 1.0, None):  # validates the name
            pass

    def __call__(self, x, sigma, y=None):
        from .guiders import input_generator

        D_c = self.D(x, sigma, y)
        with perturb_embedding(self.D, self.embedding, self.scale, self.alpha, sigma, input_generator(x, sigma, self.seed)):
            D_p = self.D(x, sigma, y)
        return D_p + _scale(self.w, sigma, x) * (D_c - D_p)


class LossGuidance:
    """Guidance by a loss on the x0 estimate: D_w = D(x) - w sigma^2 grad_x loss(D(x, sigma, y)).

    Classifier guidance with log p(y | x; sigma) replaced by -loss(D(x; sigma)): the loss judges
    the *clean* estimate, so any differentiable function of a clean sample (a distance to a
    target, a pretrained network's score) can steer, with no noise-aware training (Chung et al.
    2023, DPS, https://arxiv.org/abs/2209.14687; Bansal et al. 2024, universal guidance,
    https://arxiv.org/abs/2302.07121). The gradient runs back through the denoiser (the chain
    rule: grad_x loss(D(x)) = J_D(x)^T grad loss(D)), one forward and one backward pass per call.
    ``loss(x0)`` maps [N, ...] to [N] (one loss per sample); ``loss_grad(x0)``, if given, is its
    gradient [N, ...] with respect to x0 (else autograd differentiates ``loss``).
    w = 0 is no guidance (the loss is added, as CG's classifier term is)."""

    def __init__(self, D, loss, w, loss_grad=None):
        _check_w(w)
        if not callable(loss):
            raise TypeError(f"loss must be a function of the x0 estimate [N, ...] -> [N]; got {type(loss).__name__}")
        self.D, self.loss, self.w, self.loss_grad = D, loss, w, loss_grad

    def grad_at_x0(self, D):
        """grad of the loss with respect to the x0 estimate D [N, ...]: [N, ...]."""
        if self.loss_grad is not None:
            return self.loss_grad(D.detach())
        with torch.enable_grad():
            D_ = D.detach().requires_grad_(True)
            L = self.loss(D_)
            if not isinstance(L, torch.Tensor) or L.shape != (D.shape[0],):
                got = list(L.shape) if isinstance(L, torch.Tensor) else type(L).__name__
                raise ValueError(f"loss returned {got}; it must return one number per sample, shape [{D.shape[0]}]")
            if not L.requires_grad:
                raise ValueError("the loss does not depend differentiably on the x0 estimate (no gradient flows back: "
                                 "a comparison, .float() of a boolean or .detach() cuts it); use smooth operations")
            (g,) = torch.autograd.grad(L.sum(), D_)
        return g

    def __call__(self, x, sigma, y=None):
        with torch.enable_grad():
            x_ = x.detach().requires_grad_(True)
            D = self.D(x_, sigma, y)
            g_x0 = self.grad_at_x0(D)
            (g,) = torch.autograd.grad(D, x_, grad_outputs=g_x0)  # J_D^T grad loss: the chain rule
        if not torch.isfinite(g).all():
            raise FloatingPointError("the loss's gradient is NaN or infinite: is the loss differentiable where samples are?")
        return D.detach() - _scale(self.w, sigma, x) * expand_sigma(sigma, x) ** 2 * g
