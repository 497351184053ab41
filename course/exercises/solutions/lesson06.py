"""Lesson 6 reference solutions."""
import math

import torch


def mask_logits(logits, ratio, generator=None, offdiag=False):
    L = logits.shape[-1]
    eye = torch.eye(L, dtype=torch.bool)
    masked = torch.rand(logits.shape, generator=generator) < ratio
    if offdiag:
        masked = masked & ~eye
    masked = masked & ~(masked.all(dim=-1, keepdim=True) & eye)  # a fully masked row keeps its diagonal
    return logits.masked_fill(masked, -math.inf)
