"""Lesson 8 exercises - yours to edit. Replace each `raise NotImplementedError(...)` with your code.

Grade with `make grade` from the repository root (or: python -m course.grade notebooks/exercises --lesson lesson08).
"""
import torch


# Hints, in tiers: read the first (the idea) before the second (the shape of the computation).
HINTS = {
    'region_loss': (
        'Guidance follows minus the gradient of the loss, so the loss must be large where you do not '
        'want samples, small where you do, and change smoothly in between; how large decides how hard '
        'the samples are pulled - too hard and they leave the data.',
        'One number per point from its first coordinate: zero on the target side of 0.8 and growing '
        'with the distance on the other side (a rectified or a soft ramp, squared or not), times a scale '
        'you tune until the check passes.',
    ),
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


def region_loss(x0):
    """A loss on the clean estimate x0 [N, 2] -> [N] that steers samples of the two moons to the
    region x_1 > 0.8 (the tip of the lower moon and the end of the upper one).

    Graded by what it does: LossGuidance(moons, region_loss, w=1), 1000 samples with 32 EDM Heun
    steps (seed 0), must put at least 85% of the samples at x_1 > 0.8 (unguided: about 15%) while at
    least 90% stay on the data (exact log p > -3). It must be differentiable in x0.
    """
    raise NotImplementedError("not written yet; stuck? HINTS['region_loss'] at the top of this file")
