"""Lesson 3 exercises - yours to edit. Replace each `raise NotImplementedError(...)` with your code.

Grade with `make grade` from the repository root (or: python -m course.grade notebooks/exercises --lesson lesson03).
"""
import torch


# Hints, in tiers: read the first (the idea) before the second (the shape of the computation).
HINTS = {
    'cfg': (
        'CFG starts from the unconditional prediction and moves w times the way the condition points.',
        'The direction is the difference of the two predictions; with w = 1 you must land exactly on D_c, '
        'with w = 0 on D_u.',
    ),
    'cfg_original': (
        'The original convention starts from the other end: from the conditional prediction, and moves '
        'further away from the unconditional one.',
        "Same difference as in cfg, added to a different starting point; w' = 0 must give D_c.",
    ),
    'original_to_lerp': (
        'Both formulas are linear in D_u and D_c; two such expressions agree for every input when their '
        'coefficients agree.',
        'Write each as a D_c + b D_u and match the coefficient of D_c (the other then matches by itself).',
    ),
    'drop_labels': (
        'Label dropout decides, for each training example on its own, whether the network sees its label '
        'or the null label (-1) - so that one network learns both D_c and D_u.',
        'One uniform random number per label, drawn from the generator you are given (so that the same '
        'generator state gives the same labels); compare each with p; a boolean mask then chooses between '
        'the label and -1. Return a new tensor: the caller still needs its own labels.',
    ),
}


def cfg(D_u, D_c, w):
    """Classifier-free guidance, the course's convention: D_w = D_u + w (D_c - D_u)   (w = 1: no guidance).

    Args: D_u, D_c [N, d] the unconditional and conditional predictions; w a number. Returns [N, d].
    """
    raise NotImplementedError("not written yet; stuck? HINTS['cfg'] at the top of this file")


def cfg_original(D_u, D_c, w_original):
    """The "original" convention: D_c + w' (D_c - D_u)   (w' = 0: no guidance). Returns [N, d]."""
    raise NotImplementedError("not written yet; stuck? HINTS['cfg_original'] at the top of this file")


def original_to_lerp(w_original):
    """The w of `cfg` that gives the same output as `cfg_original` with w_original."""
    raise NotImplementedError("not written yet; stuck? HINTS['original_to_lerp'] at the top of this file")


def drop_labels(y, p, generator=None):
    """Label dropout (CFG's training): each label, independently, becomes the null label -1 with probability p.

    Args: y [N] int64 class labels; p a probability in [0, 1]; generator a torch.Generator (or None).
    Returns: [N] int64, a new tensor (y is not changed). p = 0 returns the labels unchanged, p = 1 all -1.
    """
    raise NotImplementedError("not written yet; stuck? HINTS['drop_labels'] at the top of this file")
