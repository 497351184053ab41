"""Tiny MLP denoisers for 2-D data.

* :class:`MLPDenoiser` - the EDM way (Karras et al. 2022, https://arxiv.org/abs/2206.00364): a network F wrapped in the
  preconditioning ``D(x; sigma) = c_skip x + c_out F(c_in x, c_noise)``, optionally
  class-conditional with a learned embedding per class plus one "null" class (index
  ``num_classes``) used for label dropout and unconditional calls (y = None).
* :class:`EpsMLP` - the DDPM way (the seed's Algorithm 1): ``eps_theta(x_t, t)``; wrap it in
  :class:`course.conversions.EpsDenoiser` to use it as a denoiser.
"""
import math

import torch
from torch import nn

from .conversions import as_labels, check_input


class FourierEmbedding(nn.Module):
    """[N] scalars -> [N, 2 * n] features cos(2 pi f x), sin(2 pi f x) with fixed random f."""

    def __init__(self, n: int = 16, scale: float = 1.0, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("freqs", torch.randn(n, generator=g) * scale)

    def forward(self, t):
        arg = 2 * math.pi * t.reshape(-1, 1).to(self.freqs.dtype) * self.freqs
        return torch.cat([arg.cos(), arg.sin()], dim=1)


class Backbone(nn.Module):
    """Residual MLP: h = in(x) + emb(noise) [+ class_emb(y)]; ``depth`` blocks h += W silu(h)."""

    def __init__(self, dim, width, depth, num_classes, noise_scale, out_dim=None):
        super().__init__()
        self.num_classes = num_classes
        self.noise_emb = nn.Sequential(FourierEmbedding(16, noise_scale), nn.Linear(32, width))
        self.class_emb = nn.Embedding(num_classes + 1, width) if num_classes else None
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.out = nn.Linear(width, out_dim or dim)

    def labels(self, y, n, device):
        """Labels [n] with None (or -1) mapped to the null class ``num_classes``."""
        null = torch.full((n,), self.num_classes, dtype=torch.long, device=device)
        if y is None:
            return null
        y = as_labels(y).to(device).reshape(-1).expand(n)
        if ((y < -1) | (y >= self.num_classes)).any():  # num_classes itself is internal: ask for it with -1
            raise ValueError(f"labels must lie in 0..{self.num_classes - 1} (or -1 / None for the null class); "
                             f"got {y.unique().tolist()}")
        return torch.where(y < 0, null, y)

    def forward(self, x, noise, y=None):
        h = self.inp(x) + self.noise_emb(noise)
        if self.class_emb is not None:
            h = h + self.class_emb(self.labels(y, x.shape[0], x.device))
        for block in self.blocks:
            h = h + block(torch.nn.functional.silu(h))
        return self.out(torch.nn.functional.silu(h))


class MLPDenoiser(nn.Module):
    """D(x, sigma, y) for vectors x [N, dim]; sigma a number or [N]; y None, an int or [N] labels.

    EDM preconditioning (sigma_data = 0.5): c_skip = sd^2/(s^2+sd^2), c_out = s sd/sqrt(s^2+sd^2),
    c_in = 1/sqrt(s^2+sd^2), c_noise = ln(s)/4.
    """

    def __init__(self, dim=2, width=64, depth=4, num_classes=0, sigma_data=0.5):
        super().__init__()
        self.config = dict(dim=dim, width=width, depth=depth, num_classes=num_classes, sigma_data=sigma_data)
        self.sigma_data = sigma_data
        self.net = Backbone(dim, width, depth, num_classes, noise_scale=1.0)

    def forward(self, x, sigma, y=None):
        if x.ndim != 2 or x.shape[1] != self.config["dim"]:
            raise ValueError(f"x must have shape [N, {self.config['dim']}]; got {list(x.shape)}")
        check_input(self, x)
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0]).reshape(-1, 1)
        sd = self.sigma_data
        c_skip = sd**2 / (s**2 + sd**2)
        c_out = s * sd / (s**2 + sd**2).sqrt()
        c_in = 1 / (s**2 + sd**2).sqrt()
        c_noise = s.log() / 4
        return c_skip * x + c_out * self.net(c_in * x, c_noise, y)


class EpsMLP(nn.Module):
    """eps_theta(x_t, t, y) for the VP process with T steps; t may be fractional (0-based)."""

    def __init__(self, dim=2, width=64, depth=4, num_classes=0, T=1000):
        super().__init__()
        self.config = dict(dim=dim, width=width, depth=depth, num_classes=num_classes, T=T)
        self.T = T
        self.net = Backbone(dim, width, depth, num_classes, noise_scale=4.0)

    def forward(self, x_t, t, y=None):
        check_input(self, x_t)
        t = torch.as_tensor(t, dtype=x_t.dtype, device=x_t.device).expand(x_t.shape[0])
        return self.net(x_t, t / self.T, y)
