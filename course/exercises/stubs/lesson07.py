"""Lesson 7 exercises - yours to edit. Replace each `raise NotImplementedError(...)` with your code.

Grade with `make grade` from the repository root (or: python -m course.grade notebooks/exercises --lesson lesson07).
"""
import torch


# Hints, in tiers: read the first (the idea) before the second (the shape of the computation).
HINTS = {
    'interval_calls': (
        'A Heun step evaluates the denoiser twice - at its own sigma and again at the next one - except '
        'a step that ends at sigma = 0, which takes a single Euler evaluation. Whether a step is guided '
        'is decided once, by the sigma it starts from, and a guided evaluation runs both networks.',
        'Walk over consecutive pairs of the schedule. For each pair, its evaluations are 1 or 2 (look '
        'at where it ends) and its networks per evaluation 1 or 2 (look at where it starts, against '
        'the half-open interval: lo excluded, hi included). Add up evaluations times networks; the '
        'answer is a whole number.',
    ),
}


def interval_calls(sigmas, lo, hi):
    """Network evaluations per image of EDM's Heun sampler with autoguidance only inside a guidance interval.

    Args: sigmas [N + 1] the decreasing noise levels of N steps, the last one 0; lo < hi the interval
    (lo, hi]: a step whose starting sigma lies in it is guided (main and guide network at each of its
    evaluations), any other step runs the main network alone.
    Returns: an int, the evaluations of either network per image, summed.
    """
    raise NotImplementedError("not written yet; stuck? HINTS['interval_calls'] at the top of this file")
