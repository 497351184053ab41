"""Lesson 3 reference solutions."""
import torch


def cfg(D_u, D_c, w):
    return D_u + w * (D_c - D_u)


def cfg_original(D_u, D_c, w_original):
    return D_c + w_original * (D_c - D_u)


def original_to_lerp(w_original):
    return w_original + 1


def drop_labels(y, p, generator=None):
    keep = torch.rand(y.shape, generator=generator) >= p
    return torch.where(keep, y, torch.full_like(y, -1))
