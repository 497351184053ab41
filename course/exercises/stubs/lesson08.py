"""Lesson 8 exercises - yours to edit. Replace each `raise NotImplementedError(...)` with your code.

Grade with `make grade` from the repository root (or: python -m course.grade notebooks/exercises --lesson lesson08).
"""
import torch


# Hints, in tiers: read the first (the idea) before the second (the shape of the computation).
HINTS = {
    'apg_project': (
        'Projecting one vector onto another keeps the component along it; the rest is what is left over. '
        'Here every sample is one long vector, whatever its shape.',
        "Per sample you need two inner products (flatten each sample's dimensions), their ratio as an [N] "
        "tensor, reshaped to broadcast back over the sample's dimensions.",
    ),
    'cfg_zero_scale': (
        's* is a least-squares fit: the multiple of v_u that best matches v_c, found per sample.',
        'Setting the derivative of ||v_c - s v_u||^2 to zero gives a ratio of two inner products; compute '
        'both per sample over all its dimensions, and keep the small constant of the docstring in the '
        'denominator.',
    ),
}


def apg_project(delta, D_c):
    """APG's split of the guidance update delta = D_c - D_u into the part parallel to D_c and the rest:

        delta_par = (<delta, D_c> / ||D_c||^2) D_c,    delta_orth = delta - delta_par,

    per sample, the inner product over all of a sample's dimensions.
    Args: delta, D_c [N, ...] (vectors [N, d] or images [N, C, H, W]). Returns (delta_par, delta_orth), each [N, ...].
    """
    raise NotImplementedError("not written yet; stuck? HINTS['apg_project'] at the top of this file")


def cfg_zero_scale(v_c, v_u):
    """CFG-Zero*'s optimised scale: the s* that makes s* v_u closest to v_c, per sample,

        s* = <v_c, v_u> / (||v_u||^2 + 1e-8).

    Args: v_c, v_u [N, ...]. Returns s* as [N] (one number per sample).
    """
    raise NotImplementedError("not written yet; stuck? HINTS['cfg_zero_scale'] at the top of this file")
