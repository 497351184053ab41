"""Lesson 9 reference solutions."""
import torch


def fk_log_weight_increment(D_c, D_u, w, sigma, sigma_next):
    return w * (w - 1) * (sigma**2 - sigma_next**2) / 2 * (D_c - D_u).flatten(1).pow(2).sum(1) / sigma**4


def effective_sample_size(logw):
    p = torch.softmax(logw, dim=-1)
    return 1.0 / p.pow(2).sum(-1)
