"""Lesson 5 exercises - yours to edit. Replace each `raise NotImplementedError(...)` with your code.

Grade with `make grade` from the repository root (or: python -m course.grade notebooks/exercises --lesson lesson05).
"""
import torch


# Hints, in tiers: read the first (the idea) before the second (the shape of the computation).
HINTS = {
    'autoguidance': (
        "Autoguidance is CFG's extrapolation with a different 'bad' prediction: the weaker model takes "
        'the place of the unconditional one.',
        'w may be one number or one per row: give it a shape that broadcasts over each row. w = 1 must '
        "return the main model's prediction unchanged.",
    ),
    'interval_scale': (
        'A guidance interval guides at w for the noise levels inside it and not at all outside. "Not at '
        'all" is a scale, too: ask which model D_guide + w (D_main - D_guide) is at each candidate value '
        '- one of them is the guide alone, the model you least want to sample from.',
        'sigma holds one noise level per row. Compare it with both ends - the interval is half-open: lo '
        'is outside, hi inside - to get one boolean per row, and let it choose between w and the '
        'no-guidance scale. Return floating-point numbers, one per row.',
    ),
}


def autoguidance(D_main, D_guide, w):
    """Autoguidance: D_w = D_guide + w (D_main - D_guide)  (w = 1: the main model alone).

    Args: D_main, D_guide [N, d] the two models' predictions; w a number or an [N] tensor. Returns [N, d].
    """
    raise NotImplementedError("not written yet; stuck? HINTS['autoguidance'] at the top of this file")


def interval_scale(sigma, w, sigma_lo, sigma_hi):
    """The scale of a guidance interval: w for sigma in (sigma_lo, sigma_hi], no guidance elsewhere.

    Args: sigma [N] noise levels (one per row; a float64 or float32 tensor); w the scale inside; 0 <= sigma_lo < sigma_hi.
    Returns: [N] the scale to use for each row (the lerp convention of lessons 3 and 5: D_guide + w (D_main - D_guide)).
    """
    raise NotImplementedError("not written yet; stuck? HINTS['interval_scale'] at the top of this file")
