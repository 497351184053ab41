"""Lesson 4 reference solutions."""
import math

import torch


def self_attention(q, k, v, perturb=False):
    if perturb:
        return v  # the identity map: every token keeps its own value
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    return weights @ v


def pag_cfg(D_c, D_u, D_ptb, w_cfg, w_pag):
    return D_u + w_cfg * (D_c - D_u) + (w_pag - 1) * (D_c - D_ptb)
