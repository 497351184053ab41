"""Lesson 2 exercises - yours to edit. Replace each `raise NotImplementedError(...)` with your code.

Grade with `make grade` from the repository root (or: python -m course.grade notebooks/exercises --lesson lesson02).
"""
import torch


# Hints, in tiers: read the first (the idea) before the second (the shape of the computation).
HINTS = {
    'classifier_guidance': (
        "Guidance adds w times the classifier's gradient to the score; the docstring's note says what "
        'that addition becomes once the score is written through D.',
        'The only trap is sigma: it may be one number or one per row, so shape it to broadcast over each '
        "row's coordinates before it multiplies [N, d] tensors.",
    ),
}


def classifier_guidance(D_x, grad_log_p_y, sigma, w):
    """The classifier-guidance step in denoiser form: D_w = D(x; sigma) + w * sigma^2 * grad_x log p(y | x; sigma).

    Args: D_x [N, d] the (unconditional) denoiser's output at x; grad_log_p_y [N, d] the classifier
    gradient at x; sigma a number or an [N] tensor (one noise level per row); w a number.
    Returns D_w [N, d]. (Why sigma^2? score = (D - x) / sigma^2, so adding w * g to the score adds
    w * sigma^2 * g to D.)
    """
    raise NotImplementedError("not written yet; stuck? HINTS['classifier_guidance'] at the top of this file")
