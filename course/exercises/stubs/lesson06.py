"""Lesson 6 exercises - yours to edit. Replace each `raise NotImplementedError(...)` with your code.

Grade with `make grade` from the repository root (or: python -m course.grade notebooks/exercises --lesson lesson06).
"""
import torch


# Hints, in tiers: read the first (the idea) before the second (the shape of the computation).
HINTS = {
    'mask_logits': (
        'Masking sets randomly chosen attention logits to minus infinity so that the softmax ignores '
        'them; each entry is masked independently with probability ratio.',
        'Draw one uniform number per entry (with the generator) and compare it with ratio to get a '
        'boolean mask; remove the diagonal from it if offdiag; un-mask the diagonal of any row whose '
        'every entry is masked; then fill.',
    ),
}


def mask_logits(logits, ratio, generator=None, offdiag=False):
    """The seminar's random-masking perturbation of self-attention (PAG ablation).

    Args: logits [..., L, L] attention logits (queries x keys); ratio the probability that an entry
    is masked; generator a torch.Generator (pass it to every random call); offdiag: if True, only
    off-diagonal entries may be masked.
    Returns a copy of logits with the masked entries set to -inf. A row must never be masked
    entirely (its softmax would be 0/0): in such a row, keep the diagonal entry.
    """
    raise NotImplementedError("not written yet; stuck? HINTS['mask_logits'] at the top of this file")
