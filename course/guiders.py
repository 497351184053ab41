"""Guiders: denoisers made of denoisers (lessons 2 to 5; each class cites its paper).

A guided denoiser is itself a denoiser ``D_w(x, sigma, y)``, so every sampler runs it unchanged,
on a 2-D toy or an ImageNet-64 UNet. CFG, autoguidance, PAG and ICG share one convention: w = 1
is "no guidance" (the conditional / main model alone) and the guider extrapolates from a worse
prediction toward a better one,

    D_w = D_bad + w (D_good - D_bad)          (= lerp(D_bad, D_good, w))

* :class:`CFG`:            D_bad = D(x, sigma, null label), D_good = D(x, sigma, y)
* :class:`Autoguidance`:   D_bad = a smaller / shorter-trained model, D_good = the main model
* :class:`PAG`:            D_bad = the same network with self-attention maps set to identity
* :class:`IndependentConditionGuidance`: CFG for a model without a null class, with a random
  label in place of the null one (Sadat et al. 2025, https://arxiv.org/abs/2407.02687)

Classifier guidance is the exception: :class:`ClassifierGuidance` adds w sigma^2 grad_x log
p(y | x; sigma) to a denoiser. On an unconditional D (the default), w = 1 gives the conditional
model and w = 0 the unconditional one, as above. On a conditional D (``conditional=True``, how
guided-diffusion guides its class-conditional ADM) w is guided-diffusion's ``classifier_scale``:
w = 0 is the plain conditional model, and w = 1 already guides (it targets p(x | y) p(y | x)).

The other common CFG convention, ``D_c + w' (D_c - D_u)`` (w' = 0 is no guidance), is the
same thing with ``w = w' + 1``: see :func:`w_from_original`. PAG's official g is our w;
diffusers' pag_scale s is w - 1.

``w`` may be a number or a function of sigma (e.g. :func:`guidance_interval`), so that
guidance can be limited to a range of noise levels.

Guiders that draw random numbers (ICG's random labels, PAG's random masks) draw them from a
hash of their inputs and their ``seed`` (:func:`input_hash`): a guided denoiser stays a
function, so the same call gives the same numbers, and a generation resumed halfway equals an
uninterrupted one bit for bit.
"""
import torch

from .attention import MODES, check_layer_names, perturb_attention
from .conversions import as_labels, expand_sigma

NULL = -1  # the label that asks a conditional denoiser for its unconditional (null-class) output


def w_from_original(w_original):
    """Convert the "original" CFG scale (D_c + w'(D_c - D_u), 0 = none) to ours (lerp, 1 = none)."""
    return w_original + 1


def w_to_original(w):
    """Convert our scale (D_u + w (D_c - D_u), 1 = none) to the "original" one (0 = none)."""
    return w - 1


def guidance_interval(w, sigma_lo, sigma_hi):
    """A scale function: ``w`` for sigma in (sigma_lo, sigma_hi], 1 (no guidance) elsewhere
    (Kynkaanniemi et al. 2024)."""
    _check_w(w)
    if not 0 <= sigma_lo < sigma_hi:
        raise ValueError(f"a guidance interval needs 0 <= sigma_lo < sigma_hi; got ({sigma_lo}, {sigma_hi}]"
                         + (": swapped?" if sigma_lo > sigma_hi else ": it would never guide"))

    def scale(sigma):
        sigma = torch.as_tensor(sigma)
        return torch.where((sigma > sigma_lo) & (sigma <= sigma_hi), torch.as_tensor(float(w)), torch.as_tensor(1.0))
    return scale


def _scale(w, sigma, x):
    """w (a number or a function of sigma) as a tensor that broadcasts with x [N, ...]."""
    value = w(sigma) if callable(w) else w
    value = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    if callable(w) and not torch.isfinite(value).all():
        raise ValueError(f"the guidance scale function returned {value.reshape(-1)[:4].tolist()} at sigma = "
                         f"{torch.as_tensor(sigma).reshape(-1)[:4].tolist()}: w must be finite")
    return expand_sigma(value.expand_as(torch.as_tensor(sigma, device=x.device)), x)


_PRIME = 2**31 - 1  # the hash works modulo this prime: every product fits in int64 exactly


def input_hash(x, sigma, seed=0):
    """[N] int64 in [0, 2^31 - 1): a hash of each row of x [N, ...], of sigma and of ``seed``.

    A polynomial hash of the float32 bit patterns, modulo a prime, in exact integer arithmetic:
    the same numbers on every device and in every run, and one row's hash does not depend on the
    other rows of the batch (so a sample's randomness does not depend on how samples are batched)."""
    flat = x.detach().reshape(x.shape[0], -1).float()
    bits = flat.view(torch.int32).to(torch.int64) % _PRIME
    g = torch.Generator().manual_seed(int(seed) % 2**63)
    coef = torch.randint(1, _PRIME, (flat.shape[1] + 2,), generator=g, dtype=torch.int64).to(x.device)
    h = (bits * coef[:-2] % _PRIME).sum(1) % _PRIME
    s = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).expand(x.shape[0]).contiguous()
    s_bits = s.view(torch.int32).to(torch.int64) % _PRIME
    return (h * coef[-2] % _PRIME + s_bits * coef[-1] % _PRIME) % _PRIME


def input_generator(x, sigma, seed=0):
    """A CPU torch.Generator seeded by a hash of the whole batch (see :func:`input_hash`)."""
    h = input_hash(x, sigma, seed)
    weights = torch.arange(1, len(h) + 1, dtype=torch.int64, device=h.device)
    return torch.Generator().manual_seed(int((h * weights % _PRIME).sum() % _PRIME))


def _batch(sigma, n, x):
    """sigma as a [n] tensor; a NaN, infinite or negative noise level is an error."""
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if not torch.isfinite(s).all() or (s < 0).any():
        raise ValueError(f"sigma must be finite and >= 0; got {s.reshape(-1)[:4].tolist()}")
    if s.numel() not in (1, n):
        raise ValueError(f"sigma must be one number or one per row ([{n}]); got shape {list(s.shape)}")
    return s.expand(n).reshape(n) if s.numel() == 1 else s.reshape(n)


def _labels(y, n, device):
    """Labels as an [n] long tensor (None -> all NULL); one label, or one per row."""
    if y is None:
        return torch.full((n,), NULL, dtype=torch.long, device=device)
    y = as_labels(y).to(device).reshape(-1)
    if y.numel() not in (1, n):
        raise ValueError(f"{y.numel()} labels for a batch of {n}: pass one label, or one per row of x")
    return y.expand(n)


def _check_w(w):
    if not callable(w):
        w_t = torch.as_tensor(w, dtype=torch.float64)
        if not torch.isfinite(w_t).all():
            raise ValueError(f"guidance scale w must be finite; got {w}")


def check_parts(x, **parts):
    """Each part (a denoiser's output) must be a tensor of x's shape: a guider combines predictions
    row by row, and a part with one row for a batch of four would otherwise be broadcast silently."""
    for name, part in parts.items():
        if not isinstance(part, torch.Tensor) or part.shape != x.shape:
            got = list(part.shape) if isinstance(part, torch.Tensor) else type(part).__name__
            raise ValueError(f"{name} returned {got} for x of shape {list(x.shape)}: every denoiser a guider combines "
                             "must return one prediction per row of x, of x's shape (no broadcasting is done)")
        if part.device != x.device:
            raise ValueError(f"{name} returned a tensor on {part.device} for x on {x.device}: a denoiser must answer on "
                             "x's device (move the model with model.to(x.device))")


def conditional_pair(D, x, sigma, y):
    """(D_c, D_u) = (D(x, sigma, y), D(x, sigma, NULL)), computed as one call of twice the batch.
    CFG and the guiders of :mod:`course.alternatives` that rework CFG's update share it."""
    if y is None:
        raise ValueError("this guider needs the labels y to guide toward; got y=None")
    n = x.shape[0]
    y = _labels(y, n, x.device)
    s = _batch(sigma, n, x)
    both = D(torch.cat([x, x]), torch.cat([s, s]), torch.cat([y, torch.full_like(y, NULL)]))
    check_parts(torch.cat([x, x]), **{"the denoiser (both branches in one call)": both})
    return both[:n], both[n:]


class CFG:
    """Classifier-free guidance: D_w = D_u + w (D_c - D_u), D_u = D(x, sigma, NULL).

    ``D`` must accept the label -1 (NULL) as "no condition" (a null class learned with label
    dropout). ``batched=True`` runs both branches as one call of twice the batch."""

    def __init__(self, D, w, batched=True):
        _check_w(w)
        self.D, self.w, self.batched = D, w, batched

    def __call__(self, x, sigma, y=None):
        if y is None:
            raise ValueError("CFG needs the labels y to guide toward; got y=None")
        if self.batched:
            D_c, D_u = conditional_pair(self.D, x, sigma, y)
        else:
            y = _labels(y, x.shape[0], x.device)
            D_c, D_u = self.D(x, sigma, y), self.D(x, sigma, torch.full_like(y, NULL))
            check_parts(x, **{"the conditional branch": D_c, "the unconditional branch": D_u})
        return D_u + _scale(self.w, sigma, x) * (D_c - D_u)


class IndependentConditionGuidance:
    """ICG (Sadat et al. 2025): D_w = D_r + w (D_c - D_r), D_r = D(x, sigma, r) with a random
    label r: CFG-like guidance for conditional models trained without a null class (ADM).

    A heuristic, not CFG: averaged over r, the random branch is the prior-averaged class
    denoiser sum_c p(c) D_c(x), whereas the unconditional denoiser is sum_c p(c | x) D_c(x)
    (Bayes' rule weights each class by how well it explains x). The two differ wherever x
    already says something about its class. Both branches in one batched call; r is drawn
    from a hash of (x, sigma, seed), so the guider is a deterministic function of its inputs."""

    def __init__(self, D, w, num_classes, seed=0, batched=True):
        _check_w(w)
        if int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(f"num_classes must be a whole number >= 1; got {num_classes}")
        self.D, self.w, self.num_classes, self.batched, self.seed = D, w, int(num_classes), batched, seed

    def random_labels(self, x, sigma):
        """[N] labels, uniform over the classes, a function of (x, sigma, seed)."""
        return input_hash(x, sigma, self.seed) % self.num_classes

    def __call__(self, x, sigma, y=None):
        if y is None:
            raise ValueError("ICG needs the labels y to guide toward; got y=None")
        n = x.shape[0]
        y = _labels(y, n, x.device)
        r = self.random_labels(x, sigma)
        if self.batched:
            s = _batch(sigma, n, x)
            both = self.D(torch.cat([x, x]), torch.cat([s, s]), torch.cat([y, r]))
            check_parts(torch.cat([x, x]), **{"the denoiser (both branches in one call)": both})
            D_c, D_r = both[:n], both[n:]
        else:
            D_c, D_r = self.D(x, sigma, y), self.D(x, sigma, r)
            check_parts(x, **{"the conditional branch": D_c, "the random-label branch": D_r})
        return D_r + _scale(self.w, sigma, x) * (D_c - D_r)


class Autoguidance:
    """Autoguidance (Karras et al. 2024): D_w = D_guide + w (D_main - D_guide), the guide a
    smaller and/or shorter-trained model with the same conditioning. Two different networks,
    so two calls."""

    def __init__(self, D_main, D_guide, w):
        _check_w(w)
        self.D_main, self.D_guide, self.w = D_main, D_guide, w

    def __call__(self, x, sigma, y=None):
        D_1 = self.D_main(x, sigma, y)
        D_0 = self.D_guide(x, sigma, y)
        check_parts(x, **{"the main model": D_1, "the guide": D_0})
        return D_0 + _scale(self.w, sigma, x) * (D_1 - D_0)


class ClassifierGuidance:
    """Classifier guidance: D_w = D(x, sigma, y?) + w sigma^2 grad_x log p(y | x; sigma).

    ``classifier(x, sigma, y)`` returns log p(y | x; sigma) [N] and must be noise-aware; its
    gradient comes from autograd unless ``grad(x, sigma, y)`` gives it directly. ``D`` is called
    without labels (unconditional, the paper's main use) unless ``conditional=True``.
    With the exact posterior and w = 1 this is the exact conditional denoiser (Bayes' rule).
    With ``conditional=True``, w = 0 is the unguided conditional model (w = 1 already guides)."""

    def __init__(self, D, classifier, w, grad=None, conditional=False):
        _check_w(w)
        self.D, self.classifier, self.w, self.grad, self.conditional = D, classifier, w, grad, conditional

    def classifier_grad(self, x, sigma, y):
        """grad_x log p(y | x; sigma): [N, ...]."""
        if self.grad is not None:
            return self.grad(x, sigma, y)
        with torch.enable_grad():
            x_ = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.classifier(x_, sigma, y).sum(), x_)
        return g

    def __call__(self, x, sigma, y=None):
        if y is None:
            raise ValueError("classifier guidance needs the labels y to guide toward; got y=None")
        y = _labels(y, x.shape[0], x.device)
        D = self.D(x, sigma, y if self.conditional else None)
        grad = self.classifier_grad(x, sigma, y)
        check_parts(x, **{"the denoiser": D, "the classifier's gradient": grad})
        if not torch.isfinite(grad).all():
            raise FloatingPointError(f"the classifier's gradient is NaN or infinite at sigma = "
                                     f"{torch.as_tensor(sigma).reshape(-1)[:4].tolist()}: check the classifier (NaN weights?)")
        return D + _scale(self.w, sigma, x) * expand_sigma(sigma, x) ** 2 * grad


class PAG:
    """Perturbed-attention guidance (Ahn et al. 2024): D_w = D_ptb + w (D - D_ptb), where D_ptb is
    the same network with the self-attention maps of ``layers`` (exact names) replaced by I.

    With ``cfg`` set (a CFG scale, ours), it combines with CFG as in the paper:
    D = D_u + cfg (D_c - D_u) + (w - 1) (D_c - D_ptb); all branches in one batched call.
    ``mode`` may be "random" or "offdiag" for the seed's masking ablation; their masks are drawn
    from a hash of (x, sigma, seed), so the guider is a deterministic function of its inputs.
    ``mode="seg"`` blurs the queries instead (std ``blur`` tokens): that is SEG (lesson 8)."""

    def __init__(self, D, layers, w, cfg=None, batched=True, mode="identity", ratio=0.25, seed=0, blur=float("inf")):
        _check_w(w)
        if cfg is not None:
            _check_w(cfg)
        if mode not in MODES:
            raise ValueError(f"unknown attention perturbation mode {mode!r}; choose one of {MODES}")
        if not 0 <= ratio <= 1:
            raise ValueError(f"ratio (the fraction of attention logits masked) must lie in [0, 1]; got {ratio}")
        check_layer_names(D, layers if isinstance(layers, str) else list(layers))
        self.D, self.layers, self.w, self.cfg, self.batched = D, list(layers), w, cfg, batched
        self.mode, self.ratio, self.seed, self.blur = mode, ratio, seed, blur

    def _perturbed(self, rows, x, sigma):
        g = input_generator(x, sigma, self.seed) if self.mode in ("random", "offdiag") else None
        return perturb_attention(self.D, self.layers, self.mode, rows, self.ratio, g, self.blur)

    def __call__(self, x, sigma, y=None):
        n = x.shape[0]
        ys = [y] if self.cfg is None else [_labels(y, n, x.device), _labels(None, n, x.device)]
        if self.batched:
            s = _batch(sigma, n, x)
            k = len(ys) + 1  # clean branches, then the perturbed one
            lab = None if ys[0] is None else torch.cat([_labels(v, n, x.device) for v in ys + [ys[0]]])
            rows = torch.zeros(k * n, dtype=torch.bool)
            rows[-n:] = True
            with self._perturbed(rows, x, sigma):
                out = self.D(torch.cat([x] * k), torch.cat([s] * k), lab)
            outs = list(out.split(n))
        else:
            outs = [self.D(x, sigma, v) for v in ys]
            with self._perturbed(None, x, sigma):
                outs.append(self.D(x, sigma, ys[0]))
        check_parts(x, **{f"branch {i} of the denoiser": o for i, o in enumerate(outs)})
        D_c, D_ptb = outs[0], outs[-1]
        w = _scale(self.w, sigma, x)
        if self.cfg is None:
            return D_ptb + w * (D_c - D_ptb)
        D_u = outs[1]
        return D_u + _scale(self.cfg, sigma, x) * (D_c - D_u) + (w - 1) * (D_c - D_ptb)
