"""Lesson 5 exercises - yours to edit. Replace each `raise NotImplementedError(...)` with your code.

Grade with `make grade` from the repository root (or: python -m course.grade notebooks/exercises --lesson lesson05).
"""
import torch


def autoguidance(D_main, D_guide, w):
    """Autoguidance: D_w = D_guide + w (D_main - D_guide)  (w = 1: the main model alone).

    Args: D_main, D_guide [N, d] the two models' predictions; w a number or an [N] tensor. Returns [N, d].
    """
    raise NotImplementedError("hint: the same extrapolation as CFG, with the guide model in the unconditional model's place")
