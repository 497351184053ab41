"""Lesson 1 exercises - yours to edit. Replace each `raise NotImplementedError(...)` with your code.

Grade with `make grade` from the repository root (or: python -m course.grade notebooks/exercises --lesson lesson01).
"""
import torch


# Hints, in tiers: read the first (the idea) before the second (the shape of the computation).
HINTS = {
    'forward_noise': (
        'The formula is already in the docstring; the only difficulty is the shapes when abar_t holds one '
        'value per row.',
        'Turn abar_t into a tensor shaped [N, 1] (or a scalar) so that it multiplies every coordinate of '
        'its row; then it is two square roots and a weighted sum.',
    ),
    'eps_loss': (
        'Algorithm 1 in three moves: make the noisy input from x0 and eps, ask the network for its noise '
        'estimate, and score the estimate against the noise you actually added.',
        'abar is indexed from 0 while t counts from 1. Reuse your forward_noise; the result is one number '
        '(a mean over rows and coordinates).',
    ),
    'ancestral_step': (
        'One reverse step subtracts the predicted noise, rescales, and (except at the very last step) '
        'adds fresh noise.',
        'You need alpha_t, abar_t and sigma_t for this t: abar_t is a running product of the alphas up to '
        't (betas is 0-indexed). Write the mean first, then decide whether to add sigma_t z.',
    ),
    'mixture_score': (
        "The score of a mixture is the responsibility-weighted average of each component's Gaussian "
        "score, and a Gaussian's score points from x to its mean, scaled by the inverse covariance.",
        'Noise adds sigma^2 to every variance. Get log-densities [N, K] (torch.distributions can do it '
        'batched), turn log-weights plus log-densities into responsibilities with a softmax over K, and '
        'solve rather than invert for the [N, K, d] per-component scores.',
    ),
}


def forward_noise(x0, eps, abar_t):
    """The forward process: x_t = sqrt(abar_t) * x0 + sqrt(1 - abar_t) * eps.

    Args: x0 [N, d] clean data; eps [N, d] standard normal noise; abar_t a number or an [N] tensor
    (one value per row). Returns x_t [N, d].
    """
    raise NotImplementedError("not written yet; stuck? HINTS['forward_noise'] at the top of this file")


def eps_loss(eps_net, x0, t, eps, abar):
    """Algorithm 1, one batch: mean over the batch and dimensions of || eps - eps_net(x_t, t) ||^2.

    Args: eps_net a callable (x_t [N, d], t [N]) -> [N, d]; x0 [N, d]; t [N] integer timesteps
    in 1..T; eps [N, d]; abar [T] with abar[t - 1] = abar_t. The network takes the 1-based t as given.
    Returns a 0-d tensor.
    """
    raise NotImplementedError("not written yet; stuck? HINTS['eps_loss'] at the top of this file")


def ancestral_step(x_t, eps_pred, t, betas, z):
    """Algorithm 2, line 4: x_{t-1} = 1/sqrt(alpha_t) (x_t - (1 - alpha_t)/sqrt(1 - abar_t) eps_pred) + sigma_t z,

    with alpha_t = 1 - beta_t, abar_t = prod_{s<=t} alpha_s, sigma_t = sqrt(beta_t), and no noise
    at the last step (t = 1). Args: x_t, eps_pred, z [N, d]; t an int in 1..T; betas [T] with
    betas[t - 1] = beta_t. Returns x_{t-1} [N, d].
    """
    raise NotImplementedError("not written yet; stuck? HINTS['ancestral_step'] at the top of this file")


def mixture_score(x, weights, means, covs, sigma):
    """The exact score grad_x log p(x; sigma) of a Gaussian mixture noised with std sigma.

    p(x; sigma) = sum_k w_k N(x; mu_k, C_k + sigma^2 I). Args: x [N, d]; weights [K]; means [K, d];
    covs [K, d, d]; sigma a number. Returns [N, d]:
        score(x) = sum_k r_k(x) (C_k + sigma^2 I)^-1 (mu_k - x),  r_k = w_k N_k(x) / sum_j w_j N_j(x).
    Compute r_k with log-densities and a softmax, or points far away give 0/0 = NaN.
    """
    raise NotImplementedError("not written yet; stuck? HINTS['mixture_score'] at the top of this file")
