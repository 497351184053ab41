"""Lesson 0 reference solutions."""
import torch


def sample_mixture(weights, means, stds, n, generator=None):
    """Draw n points from a mixture of isotropic 2-D Gaussians: [n, 2]."""
    k = torch.multinomial(weights, n, replacement=True, generator=generator)  # component of each point
    z = torch.randn(n, 2, generator=generator, dtype=means.dtype)
    return means[k] + stds[k].unsqueeze(1) * z
