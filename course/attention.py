"""Self-attention that can be perturbed, for perturbed-attention guidance (PAG; Ahn et al. 2024,
https://arxiv.org/abs/2403.17377; lesson 4).

PAG's "undesired" branch is the same network with chosen self-attention maps replaced:

    SA(Q, K, V)  = softmax(Q K^T / sqrt(d)) V      (structure x appearance)
    PSA(Q, K, V) = I V = V                           (identity: every token keeps its own value)

The block still applies its output projection and residual. The seed's ablation also masks a
random 25% of the logits before the softmax ("random"), or only off-diagonal ones ("offdiag").
Smoothed-energy guidance (SEG, Hong 2024; lesson 8) blurs the *queries* with a Gaussian of std
``blur`` tokens over the token grid ("seg"). The logits are linear in the queries, so that is the
same blur applied along the logits' query axis; ``blur = inf`` makes every query the mean query.

Every attention module of the course subclasses :class:`PerturbableAttention` and computes its
weights with :func:`attention_weights`; :func:`perturb_attention` switches chosen modules, by
exact name, for a block of code and for chosen batch rows only (so the perturbed and the
unperturbed branch can run in one batched call).
"""
import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

MODES = ("identity", "random", "offdiag", "seg")


@dataclass
class Perturbation:
    mode: str = "identity"
    rows: torch.Tensor = None  # [B] bool: which batch rows are perturbed (None: all)
    ratio: float = 0.25  # for "random" / "offdiag": fraction of logits masked
    generator: torch.Generator = None
    blur: float = math.inf  # for "seg": the query blur's std, in tokens


def _blur_1d(n: int, blur: float) -> torch.Tensor:
    """[n, n]: the SEG paper's 1-D Gaussian blur of n tokens as a matrix - a kernel of
    ceil(6 blur) + 1 taps made odd (at most n + 1 wide, as its code caps it), taps
    exp(-k^2 / (2 blur^2)) normalised to sum 1, borders reflect-padded (token -1 is token 1)."""
    size = math.ceil(6 * blur) + 1 - math.ceil(6 * blur) % 2
    size = min(size, n - (n % 2 - 1))
    half = size // 2
    taps = torch.exp(-0.5 * (torch.linspace(-(size - 1) / 2, (size - 1) / 2, size, dtype=torch.float64) / blur) ** 2)
    taps = taps / taps.sum()
    B = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for k in range(size):
            j = i + k - half
            j = -j if j < 0 else (2 * (n - 1) - j if j > n - 1 else j)  # reflect, without repeating the edge
            B[i, j] += taps[k]
    return B


def query_blur(L: int, blur: float, device=None) -> torch.Tensor:
    """[L, L] the SEG paper's query blur as a matrix over the token grid (a square grid when L is
    a square number, e.g. 4 x 4 = 16 tokens of a UNet's 4x4 level; else a line of L tokens - the
    course's choice, the paper blurs images only): a separable Gaussian of std ``blur`` tokens,
    kernel ceil(6 blur) + 1 taps (odd), reflect-padded borders (:func:`_blur_1d`). blur = inf
    gives the uniform average 1/L (every query the mean query), as the paper's code does."""
    if not blur > 0:
        raise ValueError(f"the SEG blur (a std in tokens) must be > 0 (inf allowed); got {blur}")
    if math.isinf(blur):
        return torch.full((L, L), 1.0 / L, device=device)
    side = math.isqrt(L)
    if side * side == L and side > 1:
        B1 = _blur_1d(side, blur)
        B = torch.kron(B1, B1)  # token i sits at (i // side, i % side): rows, then columns
    else:
        B = _blur_1d(L, blur) if L > 1 else torch.ones(1, 1, dtype=torch.float64)
    return B.to(device)


class PerturbableAttention(nn.Module):
    """Marker base class: a module whose attention map :func:`perturb_attention` may replace."""

    perturbation = None


def attention_weights(logits: torch.Tensor, perturbation: Perturbation = None) -> torch.Tensor:
    """softmax over the last axis of ``logits`` [B, ..., L, L], perturbed for the chosen rows.

    identity: the map becomes I. random: a random ``ratio`` of logits set to -inf (a row left
    with none is given back its diagonal, so it stays a distribution). offdiag: the same, but
    only off-diagonal logits are masked.
    """
    weights = torch.softmax(logits, dim=-1)
    p = perturbation
    if p is None:
        return weights
    L = logits.shape[-1]
    eye = torch.eye(L, dtype=torch.bool, device=logits.device)
    if p.mode == "identity":
        perturbed = eye.to(weights.dtype).expand_as(weights)
    elif p.mode in ("random", "offdiag"):
        u = torch.rand(logits.shape, generator=p.generator, device="cpu").to(logits.device)
        masked = u < p.ratio
        if p.mode == "offdiag":
            masked = masked & ~eye
        masked = masked & ~(masked.all(dim=-1, keepdim=True) & eye)  # never mask a whole row
        perturbed = torch.softmax(logits.masked_fill(masked, -math.inf), dim=-1)
    elif p.mode == "seg":
        # blurred queries Q' = B Q give logits Q' K^T = B (Q K^T): blur along the query axis
        B = query_blur(L, p.blur, logits.device).to(logits.dtype)
        perturbed = torch.softmax(B @ logits, dim=-1)
    else:
        raise ValueError(f"unknown attention perturbation {p.mode!r}; choose one of {MODES}")
    if p.rows is None:
        return perturbed
    rows = p.rows.to(logits.device).reshape(-1, *([1] * (logits.ndim - 1)))
    return torch.where(rows, perturbed, weights)


def attention_modules(model) -> dict:
    """{exact name: module} of every perturbable attention module in ``model``."""
    return {name: m for name, m in model.named_modules() if isinstance(m, PerturbableAttention)}


def check_layer_names(model, names):
    """Raise a ValueError naming the valid layers if any of ``names`` is not an attention layer."""
    valid = attention_modules(model)
    if isinstance(names, str):
        raise TypeError(f"layers must be a list of names, e.g. [{names!r}]; a single string is ambiguous")
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise ValueError(
            f"unknown attention layer(s) {unknown or '(none given)'}; names are matched exactly "
            f"(no patterns). Valid names: {sorted(valid)}"
        )
    return [valid[n] for n in names]


@contextmanager
def perturb_attention(model, names, mode="identity", rows=None, ratio=0.25, generator=None, blur=math.inf):
    """Within the ``with`` block, the attention layers ``names`` of ``model`` are perturbed
    (for batch ``rows`` only, if given). Unknown names raise an error that lists the valid ones."""
    if mode not in MODES:
        raise ValueError(f"unknown attention perturbation {mode!r}; choose one of {MODES}")
    modules = check_layer_names(model, names)
    p = Perturbation(mode, rows, ratio, generator, blur)
    for m in modules:
        m.perturbation = p
    try:
        yield
    finally:
        for m in modules:
            m.perturbation = None


class SelfAttention(PerturbableAttention):
    """Multi-head self-attention over tokens [B, L, C] with a residual: x + proj(attn(x))."""

    def __init__(self, channels: int, heads: int = 1):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.heads = heads
        self.norm = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x):
        B, L, C = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, L, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        logits = q @ k.transpose(-1, -2) / math.sqrt(C // self.heads)  # [B, heads, L, L]
        out = attention_weights(logits, self.perturbation) @ v
        return x + self.proj(out.transpose(1, 2).reshape(B, L, C))
