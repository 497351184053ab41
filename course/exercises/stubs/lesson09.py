"""Lesson 9 exercises - yours to edit. Replace each `raise NotImplementedError(...)` with your code.

Grade with `make grade` from the repository root (or: python -m course.grade notebooks/exercises --lesson lesson09).
"""
import torch


def fk_log_weight_increment(D_c, D_u, w, sigma, sigma_next):
    """The Feynman-Kac log-weight increment of one reverse-SDE step sigma -> sigma_next (VE, sigma(t) = t):

        w (w - 1) * t |dt| * ||s_c - s_u||^2,  with t |dt| = (sigma^2 - sigma_next^2) / 2
        and the scores from Tweedie: s = (D - x) / sigma^2, so s_c - s_u = (D_c - D_u) / sigma^2.

    Args: D_c, D_u [N, d] the conditional and unconditional denoisers' outputs at (x, sigma);
    w the guidance weight (a number); sigma > sigma_next >= 0 numbers. Returns [N].
    """
    raise NotImplementedError("hint: w * (w - 1) * (sigma**2 - sigma_next**2) / 2 * ((D_c - D_u)**2).sum(1) / sigma**4")


def effective_sample_size(logw):
    """The effective sample size of log-weights [..., P] along the last axis: 1 / sum_j p_j^2 with
    p = the normalised weights (softmax of logw). P equal weights give P; one dominant weight gives 1.
    Work from log-weights: they can be +-1000, where exp overflows. Returns [...]."""
    raise NotImplementedError("hint: p = torch.softmax(logw, dim=-1); then 1 / (p**2).sum(-1)")
