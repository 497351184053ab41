"""Lesson 9 exercises - yours to edit. Replace each `raise NotImplementedError(...)` with your code.

Grade with `make grade` from the repository root (or: python -m course.grade notebooks/exercises --lesson lesson09).
"""
import torch


# Hints, in tiers: read the first (the idea) before the second (the shape of the computation).
HINTS = {
    'fk_log_weight_increment': (
        'The increment grows with how much the two scores disagree and with the length of the step; the '
        'docstring gives each factor, and Tweedie turns denoiser differences into score differences.',
        "Compute the squared norm of the score difference per row (a sum over the row's coordinates), "
        'then multiply by the step factor and by the w-dependent factor. The result has one number per '
        'row.',
    ),
    'effective_sample_size': (
        'The effective sample size is the inverse of the sum of squared normalised weights; the trap is '
        'normalising log-weights that can be +-1000.',
        'Normalise in log space (a softmax along the last axis is exactly that, and stable); then square, '
        'sum over the last axis and invert.',
    ),
}


def fk_log_weight_increment(D_c, D_u, w, sigma, sigma_next):
    """The Feynman-Kac log-weight increment of one reverse-SDE step sigma -> sigma_next (VE, sigma(t) = t):

        w (w - 1) * t |dt| * ||s_c - s_u||^2,  with t |dt| = (sigma^2 - sigma_next^2) / 2
        and the scores from Tweedie: s = (D - x) / sigma^2, so s_c - s_u = (D_c - D_u) / sigma^2.

    Args: D_c, D_u [N, d] the conditional and unconditional denoisers' outputs at (x, sigma);
    w the guidance weight (a number); sigma > sigma_next >= 0 numbers. Returns [N].
    """
    raise NotImplementedError("not written yet; stuck? HINTS['fk_log_weight_increment'] at the top of this file")


def effective_sample_size(logw):
    """The effective sample size of log-weights [..., P] along the last axis: 1 / sum_j p_j^2 with
    p = the normalised weights (softmax of logw). P equal weights give P; one dominant weight gives 1.
    Work from log-weights: they can be +-1000, where exp overflows. Returns [...]."""
    raise NotImplementedError("not written yet; stuck? HINTS['effective_sample_size'] at the top of this file")
