"""Lesson 0 exercises - yours to edit. Replace each `raise NotImplementedError(...)` with your code.

Grade with `make grade` from the repository root (or: python -m course.grade notebooks/exercises --lesson lesson00).
"""
import torch


# Hints, in tiers: read the first (the idea) before the second (the shape of the computation).
HINTS = {
    'sample_mixture': (
        'Sampling a mixture is two draws in a row: first which component a point comes from (with the '
        'weights as probabilities), then where it lands inside that round Gaussian.',
        'Draw n component indices [n] at once, then n standard normal 2-D vectors [n, 2]; index the '
        'centres and the spreads with the indices and combine. Pass the generator to both random calls, '
        'nothing else is random.',
    ),
}


def sample_mixture(weights, means, stds, n, generator=None):
    """Draw n points from a mixture of isotropic 2-D Gaussians.

    Args:
        weights: [K] tensor of mixture weights (non-negative, summing to 1).
        means:   [K, 2] tensor, the component centres.
        stds:    [K] tensor, the standard deviation of each (round) component.
        n:       how many points to draw.
        generator: a torch.Generator for reproducibility; pass it to every random call.

    Returns:
        [n, 2] tensor of samples: pick a component k ~ weights for each point, then
        x = means[k] + stds[k] * z with z ~ N(0, I).
    """
    raise NotImplementedError("not written yet; stuck? HINTS['sample_mixture'] at the top of this file")
