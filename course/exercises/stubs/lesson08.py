"""Lesson 8 exercises - yours to edit. Replace each `raise NotImplementedError(...)` with your code.

Grade with `make grade` from the repository root (or: python -m course.grade notebooks/exercises --lesson lesson08).
"""
import torch


def apg_project(delta, D_c):
    """APG's split of the guidance update delta = D_c - D_u into the part parallel to D_c and the rest:

        delta_par = (<delta, D_c> / ||D_c||^2) D_c,    delta_orth = delta - delta_par,

    per sample, the inner product over all of a sample's dimensions.
    Args: delta, D_c [N, ...] (vectors [N, d] or images [N, C, H, W]). Returns (delta_par, delta_orth), each [N, ...].
    """
    raise NotImplementedError("hint: dot = (delta * D_c).flatten(1).sum(1); reshape it to [N, 1, ...] to broadcast")


def cfg_zero_scale(v_c, v_u):
    """CFG-Zero*'s optimised scale: the s* that makes s* v_u closest to v_c, per sample,

        s* = <v_c, v_u> / (||v_u||^2 + 1e-8).

    Args: v_c, v_u [N, ...]. Returns s* as [N] (one number per sample).
    """
    raise NotImplementedError("hint: (v_c * v_u).flatten(1).sum(1) / ((v_u ** 2).flatten(1).sum(1) + 1e-8)")
