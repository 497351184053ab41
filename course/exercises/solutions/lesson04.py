"""Lesson 4 reference solutions."""
import math

import torch


def self_attention(q, k, v, perturb=False):
    if perturb:
        return v  # the identity map: every token keeps its own value
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    return weights @ v
