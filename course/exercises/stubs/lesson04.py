"""Lesson 4 exercises - yours to edit. Replace each `raise NotImplementedError(...)` with your code.

Grade with `make grade` from the repository root (or: python -m course.grade notebooks/exercises --lesson lesson04).
"""
import math

import torch


# Hints, in tiers: read the first (the idea) before the second (the shape of the computation).
HINTS = {
    'self_attention': (
        "Attention mixes the values with weights that say how well each query matches each key; PAG's "
        'perturbation replaces those weights by the identity, so each token keeps its own value.',
        'Compare every query with every key ([B, L, L] scores, scaled by the square root of the channel '
        "count), normalise each query's row of scores into weights, and use them to average the values.",
    ),
}


def self_attention(q, k, v, perturb=False):
    """Scaled dot-product self-attention, and PAG's perturbed version.

    SA(Q, K, V) = softmax(Q K^T / sqrt(d)) V;   PSA(Q, K, V) = I V = V  (perturb=True).
    Args: q, k, v [B, L, d] (batch, tokens, channels); perturb a bool. Returns [B, L, d].
    """
    raise NotImplementedError("not written yet; stuck? HINTS['self_attention'] at the top of this file")
