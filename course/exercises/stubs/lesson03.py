"""Lesson 3 exercises - yours to edit. Replace each `raise NotImplementedError(...)` with your code.

Grade with `make grade` from the repository root (or: python -m course.grade notebooks/exercises --lesson lesson03).
"""
import torch


def cfg(D_u, D_c, w):
    """Classifier-free guidance, the course's convention: D_w = D_u + w (D_c - D_u)   (w = 1: no guidance).

    Args: D_u, D_c [N, d] the unconditional and conditional predictions; w a number. Returns [N, d].
    """
    raise NotImplementedError("hint: this is torch.lerp(D_u, D_c, w)")


def cfg_original(D_u, D_c, w_original):
    """The "original" convention: D_c + w' (D_c - D_u)   (w' = 0: no guidance). Returns [N, d]."""
    raise NotImplementedError("hint: start from D_c, not D_u")


def original_to_lerp(w_original):
    """The w of `cfg` that gives the same output as `cfg_original` with w_original."""
    raise NotImplementedError("hint: expand both formulas and compare the coefficients of D_c")
