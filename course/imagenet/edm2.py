"""EDM2's magnitude-preserving UNet (Karras et al., "Analyzing and improving the training dynamics
of diffusion models", 2024), written for this course from the paper's description and verified
number by number against the official network's outputs (shared/conformance).

Magnitude preservation: every layer is built so that unit-variance inputs give unit-variance
outputs - convolutions with weights normalised to unit norm and no biases, a SiLU rescaled by its
expected output magnitude, and sums/concatenations that re-normalise their weights.

Interface: :class:`EDM2Denoiser` is D(x, sigma, y): x [N, 3, H, W] in [-1, 1] pixel units,
sigma a number or [N], y None (unconditional), -1 / int / [N] class indices, or [N, classes]
one-hot (or soft) label vectors. Its attention blocks are named as in the official state dict
(``unet.enc.16x16_block0`` ...) and can be switched to identity attention for PAG.
"""
import math

import numpy as np
import torch
from torch import nn

from ..attention import PerturbableAttention, attention_weights
from ..conversions import check_input


# --- magnitude-preserving primitives (paper, section 3 and appendix B) -------------------------------
def normalize(x, dim=None, eps=1e-4):
    """x / ||x||, with the norm taken over ``dim`` (default: all but the first axis) and scaled so
    that a vector of unit-variance entries has norm 1 (eps + sqrt(n_elem / n_total) * ||x||)."""
    if dim is None:
        dim = list(range(1, x.ndim))
    norm = torch.linalg.vector_norm(x, dim=dim, keepdim=True, dtype=torch.float32)
    norm = torch.add(eps, norm, alpha=math.sqrt(norm.numel() / x.numel()))
    return x / norm.to(x.dtype)


def mp_silu(x):
    """SiLU divided by 0.596, its output magnitude for unit-normal input (eq. 81 of the paper)."""
    return torch.nn.functional.silu(x) / 0.596


def mp_sum(a, b, t=0.5):
    """(1 - t) a + t b, rescaled to keep unit magnitude: divide by sqrt((1 - t)^2 + t^2)."""
    return a.lerp(b, t) / math.sqrt((1 - t) ** 2 + t**2)


def mp_cat(a, b, dim=1, t=0.5):
    """Concatenate with the two parts weighted (1 - t) : t, keeping unit magnitude overall."""
    Na, Nb = a.shape[dim], b.shape[dim]
    C = math.sqrt((Na + Nb) / ((1 - t) ** 2 + t**2))
    wa = C / math.sqrt(Na) * (1 - t)
    wb = C / math.sqrt(Nb) * t
    return torch.cat([wa * a, wb * b], dim=dim)


class MPFourier(nn.Module):
    """Fourier features sqrt(2) cos(2 pi f x + phi) with fixed random f ~ N(0, bandwidth^2), phi ~ U[0, 1)."""

    def __init__(self, num_channels, bandwidth=1.0):
        super().__init__()
        self.register_buffer("freqs", 2 * np.pi * torch.randn(num_channels) * bandwidth)
        self.register_buffer("phases", 2 * np.pi * torch.rand(num_channels))

    def forward(self, x):
        y = x.to(torch.float32).ger(self.freqs.to(torch.float32)) + self.phases.to(torch.float32)
        return (y.cos() * np.sqrt(2)).to(x.dtype)


class MPConv(nn.Module):
    """Convolution (kernel [kh, kw]) or linear layer (kernel []) with weight normalisation: each
    output channel's weight has unit norm, divided by sqrt(fan-in), times an optional gain."""

    def __init__(self, in_channels, out_channels, kernel):
        super().__init__()
        self.out_channels = out_channels
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, *kernel))

    def forward(self, x, gain=1):
        w = self.weight.to(torch.float32)
        if self.training:  # forced weight normalisation (training only; keeps the stored weight on the sphere)
            with torch.no_grad():
                self.weight.copy_(normalize(w))
        w = normalize(w)
        w = w * (gain / np.sqrt(w[0].numel()))
        w = w.to(x.dtype)
        if w.ndim == 2:
            return x @ w.t()
        return torch.nn.functional.conv2d(x, w, padding=(w.shape[-1] // 2,))


def resample(x, mode="keep"):
    """2x down (average of 2x2 pixels) or up (nearest neighbour): EDM2's [1, 1] resampling filter."""
    if mode == "down":
        return torch.nn.functional.avg_pool2d(x, 2)
    if mode == "up":
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
    return x


class Block(PerturbableAttention):
    """An encoder or decoder block: [resample], residual branch (conv, embedding scale, conv)
    mixed in with mp_sum (t = 0.3), optional self-attention mixed in likewise, clipped to +-256.

    Identity attention (PAG) replaces softmax(q k^T / sqrt(c)) by I, so the attention output is
    the pixel-normalised v, then attn_proj and the usual mp_sum."""

    def __init__(self, in_channels, out_channels, emb_channels, flavor="enc", resample_mode="keep", attention=False,
                 channels_per_head=64, dropout=0.0, res_balance=0.3, attn_balance=0.3, clip_act=256):
        super().__init__()
        self.out_channels = out_channels
        self.flavor, self.resample_mode = flavor, resample_mode
        self.num_heads = out_channels // channels_per_head if attention else 0
        self.dropout, self.res_balance, self.attn_balance, self.clip_act = dropout, res_balance, attn_balance, clip_act
        self.emb_gain = nn.Parameter(torch.zeros([]))
        self.conv_res0 = MPConv(out_channels if flavor == "enc" else in_channels, out_channels, [3, 3])
        self.emb_linear = MPConv(emb_channels, out_channels, [])
        self.conv_res1 = MPConv(out_channels, out_channels, [3, 3])
        self.conv_skip = MPConv(in_channels, out_channels, [1, 1]) if in_channels != out_channels else None
        self.attn_qkv = MPConv(out_channels, out_channels * 3, [1, 1]) if self.num_heads else None
        self.attn_proj = MPConv(out_channels, out_channels, [1, 1]) if self.num_heads else None

    @property
    def has_attention(self):
        return self.num_heads > 0

    def forward(self, x, emb):
        x = resample(x, self.resample_mode)
        if self.flavor == "enc":
            if self.conv_skip is not None:
                x = self.conv_skip(x)
            x = normalize(x, dim=1)  # pixel norm
        y = self.conv_res0(mp_silu(x))
        c = self.emb_linear(emb, gain=self.emb_gain) + 1  # per-channel scale from the embedding
        y = mp_silu(y * c.unsqueeze(2).unsqueeze(3).to(y.dtype))
        if self.training and self.dropout:
            y = torch.nn.functional.dropout(y, p=self.dropout)
        y = self.conv_res1(y)
        if self.flavor == "dec" and self.conv_skip is not None:
            x = self.conv_skip(x)
        x = mp_sum(x, y, t=self.res_balance)
        if self.num_heads:
            y = self.attn_qkv(x)
            # q, k, v interleaved per channel: [N, heads, channels per head, 3, pixels]
            y = y.reshape(y.shape[0], self.num_heads, -1, 3, y.shape[2] * y.shape[3])
            q, k, v = normalize(y, dim=2).unbind(3)
            logits = torch.einsum("nhcq,nhck->nhqk", q, k / np.sqrt(q.shape[2]))
            w = attention_weights(logits, self.perturbation)
            y = torch.einsum("nhqk,nhck->nhcq", w, v)
            y = self.attn_proj(y.reshape(*x.shape))
            x = mp_sum(x, y, t=self.attn_balance)
        if self.clip_act is not None:
            x = x.clip(-self.clip_act, self.clip_act)
        return x


class UNet(nn.Module):
    """EDM2's UNet: F(x, c_noise, class_labels). Resolution levels with ``num_blocks`` encoder
    blocks (num_blocks + 1 decoder blocks) each; attention at ``attn_resolutions``; the noise
    and class embeddings mixed 50/50; a constant-ones channel appended to the input."""

    def __init__(self, img_resolution, img_channels, label_dim, model_channels=192, channel_mult=(1, 2, 3, 4),
                 channel_mult_noise=None, channel_mult_emb=None, num_blocks=3, attn_resolutions=(16, 8),
                 label_balance=0.5, concat_balance=0.5, **block_kwargs):
        super().__init__()
        cblock = [model_channels * m for m in channel_mult]
        cnoise = model_channels * channel_mult_noise if channel_mult_noise is not None else cblock[0]
        cemb = model_channels * channel_mult_emb if channel_mult_emb is not None else max(cblock)
        self.label_dim, self.label_balance, self.concat_balance = label_dim, label_balance, concat_balance
        self.out_gain = nn.Parameter(torch.zeros([]))
        self.emb_fourier = MPFourier(cnoise)
        self.emb_noise = MPConv(cnoise, cemb, [])
        self.emb_label = MPConv(label_dim, cemb, []) if label_dim else None

        self.enc = nn.ModuleDict()
        cout = img_channels + 1  # + the constant-ones channel
        for level, channels in enumerate(cblock):
            res = img_resolution >> level
            if level == 0:
                cin, cout = cout, channels
                self.enc[f"{res}x{res}_conv"] = MPConv(cin, cout, [3, 3])
            else:
                self.enc[f"{res}x{res}_down"] = Block(cout, cout, cemb, "enc", "down", **block_kwargs)
            for i in range(num_blocks):
                cin, cout = cout, channels
                self.enc[f"{res}x{res}_block{i}"] = Block(cin, cout, cemb, "enc", attention=res in attn_resolutions, **block_kwargs)

        self.dec = nn.ModuleDict()
        skips = [block.out_channels for block in self.enc.values()]
        for level, channels in reversed(list(enumerate(cblock))):
            res = img_resolution >> level
            if level == len(cblock) - 1:
                self.dec[f"{res}x{res}_in0"] = Block(cout, cout, cemb, "dec", attention=True, **block_kwargs)
                self.dec[f"{res}x{res}_in1"] = Block(cout, cout, cemb, "dec", **block_kwargs)
            else:
                self.dec[f"{res}x{res}_up"] = Block(cout, cout, cemb, "dec", "up", **block_kwargs)
            for i in range(num_blocks + 1):
                cin, cout = cout + skips.pop(), channels
                self.dec[f"{res}x{res}_block{i}"] = Block(cin, cout, cemb, "dec", attention=res in attn_resolutions, **block_kwargs)
        self.out_conv = MPConv(cout, img_channels, [3, 3])

    def forward(self, x, noise_labels, class_labels):
        emb = self.emb_noise(self.emb_fourier(noise_labels))
        if self.emb_label is not None:
            emb = mp_sum(emb, self.emb_label(class_labels * np.sqrt(class_labels.shape[1])), t=self.label_balance)
        emb = mp_silu(emb)
        x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
        skips = []
        for name, block in self.enc.items():
            x = block(x) if "conv" in name else block(x, emb)
            skips.append(x)
        for name, block in self.dec.items():
            if "block" in name:
                x = mp_cat(x, skips.pop(), t=self.concat_balance)
            x = block(x, emb)
        return self.out_conv(x, gain=self.out_gain)


class EDM2Denoiser(nn.Module):
    """EDM preconditioning around the UNet: D = c_skip x + c_out F(c_in x, ln(sigma)/4, labels)
    (Karras et al. 2022, https://arxiv.org/abs/2206.00364, Table 1), plus the learned log-variance head used only in training.

    Constructor arguments are the official ``Precond`` ones (``img_resolution``, ``img_channels``,
    ``label_dim``, ``use_fp16``, ``sigma_data``, ``logvar_channels`` and the UNet's)."""

    def __init__(self, img_resolution=64, img_channels=3, label_dim=1000, use_fp16=False, sigma_data=0.5,
                 logvar_channels=128, **unet_kwargs):
        super().__init__()
        self.config = dict(img_resolution=img_resolution, img_channels=img_channels, label_dim=label_dim, use_fp16=use_fp16,
                           sigma_data=sigma_data, logvar_channels=logvar_channels, **unet_kwargs)
        self.img_resolution, self.img_channels, self.label_dim = img_resolution, img_channels, label_dim
        self.use_fp16, self.sigma_data = use_fp16, sigma_data
        self.unet = UNet(img_resolution, img_channels, label_dim, **unet_kwargs)
        self.logvar_fourier = MPFourier(logvar_channels)
        self.logvar_linear = MPConv(logvar_channels, 1, [])

    def attention_blocks(self):
        """Names of the blocks with self-attention (for PAG), in network order."""
        return [name for name, m in self.named_modules() if isinstance(m, Block) and m.has_attention]

    def one_hot(self, y, n, device):
        """Labels as [N, label_dim] vectors: None or -1 -> all zeros (what the official code feeds
        when no label is given), ints -> one-hot, [N, label_dim] tensors pass through."""
        if self.label_dim == 0:
            return None
        if y is None:
            return torch.zeros(n, self.label_dim, device=device)
        y = torch.as_tensor(y, device=device)
        if y.ndim == 2:
            if y.shape != (n, self.label_dim):
                raise ValueError(f"label vectors must have shape [{n}, {self.label_dim}]; got {list(y.shape)}")
            return y.to(torch.float32)
        y = y.to(torch.long).reshape(-1).expand(n)
        if (y >= self.label_dim).any() or (y < -1).any():
            raise ValueError(f"class indices must lie in 0..{self.label_dim - 1} (or -1 for no label)")
        out = torch.zeros(n, self.label_dim, device=device)
        keep = y >= 0
        out[keep] = torch.nn.functional.one_hot(y[keep], self.label_dim).to(torch.float32)
        return out

    def forward(self, x, sigma, y=None, force_fp32=False):
        if x.ndim != 4 or x.shape[1:] != (self.img_channels, self.img_resolution, self.img_resolution):
            raise ValueError(f"x must have shape [N, {self.img_channels}, {self.img_resolution}, {self.img_resolution}]; got {list(x.shape)}")
        check_input(self, x, dtype=False)  # any float dtype: x is cast to float32 here
        x = x.to(torch.float32)
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).expand(x.shape[0]).reshape(-1, 1, 1, 1)
        labels = self.one_hot(y, x.shape[0], x.device)
        dtype = torch.float16 if (self.use_fp16 and not force_fp32 and x.device.type == "cuda") else torch.float32
        sd = self.sigma_data
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
        c_in = 1 / (sd**2 + sigma**2).sqrt()
        c_noise = sigma.flatten().log() / 4
        F_x = self.unet((c_in * x).to(dtype), c_noise, labels)
        return c_skip * x + c_out * F_x.to(torch.float32)
