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
    'noise_aware_loss': (
        'A sampler asks the classifier about noisy points at every noise level it visits, from sigma = 80 down to '
        '0.002; train it on exactly such points: each clean row noised by the forward process of lesson 1, at a '
        'noise level of its own.',
        'Three tensors of N rows, in order: the noise levels (positive and spread over decades, so draw their '
        'logarithm from the normal distribution the docstring gives), the noise (shaped like x0), the noisy points; '
        'then one call of clf on the noisy points with their levels, and the usual classification loss of its '
        'logits against y. Every random draw takes generator=generator.',
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


def noise_aware_loss(clf, x0, y, generator=None):
    """The training loss of a noise-aware classifier: cross-entropy on noisy copies of clean data.

    Args: clf a classifier, clf(x [N, d], sigma [N]) -> logits [N, C]; x0 [N, d] clean samples;
    y [N] their labels (int64); generator a torch.Generator for every random draw (None: the global one).
    Returns a scalar tensor, the mean cross-entropy over the N rows, where row i is x0[i] noised at
    its own sigma_i with ln sigma_i ~ N(-1.5, 1.8^2) (about 0.006 to 8 for 95% of rows).
    """
    raise NotImplementedError("not written yet; stuck? HINTS['noise_aware_loss'] at the top of this file")
