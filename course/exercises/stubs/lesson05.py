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
}


def autoguidance(D_main, D_guide, w):
    """Autoguidance: D_w = D_guide + w (D_main - D_guide)  (w = 1: the main model alone).

    Args: D_main, D_guide [N, d] the two models' predictions; w a number or an [N] tensor. Returns [N, d].
    """
    raise NotImplementedError("not written yet; stuck? HINTS['autoguidance'] at the top of this file")
