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
    'pag_cfg': (
        'Each guider pushes away from a worse prediction of its own: CFG from the unconditional one, PAG '
        'from the perturbed one. Combined, both pushes start from the same place, and each must vanish '
        'when its own scale says "no guidance" (in the lerp convention, a scale of 1).',
        'Start from CFG at w_cfg (lesson 3). Then write PAG alone the way lesson 3 writes CFG, and ask '
        'what it adds to D_c: a difference of two predictions times a factor that is zero when w_pag = 1. '
        'Add that push. Check on paper: w_pag = 1 must leave plain CFG, w_cfg = 1 plain PAG.',
    ),
}


def self_attention(q, k, v, perturb=False):
    """Scaled dot-product self-attention, and PAG's perturbed version.

    SA(Q, K, V) = softmax(Q K^T / sqrt(d)) V;   PSA(Q, K, V) = I V = V  (perturb=True).
    Args: q, k, v [B, L, d] (batch, tokens, channels); perturb a bool. Returns [B, L, d].
    """
    raise NotImplementedError("not written yet; stuck? HINTS['self_attention'] at the top of this file")


def pag_cfg(D_c, D_u, D_ptb, w_cfg, w_pag):
    """PAG and CFG at once (Ahn et al. 2024): one prediction from the three branches of one batched call.

    Args: D_c, D_u, D_ptb [N, d] the conditional, unconditional and perturbed-attention (conditional)
    predictions; w_cfg, w_pag the two scales, lerp convention (1 = that guider off). Returns [N, d].
    """
    raise NotImplementedError("not written yet; stuck? HINTS['pag_cfg'] at the top of this file")
