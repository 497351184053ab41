"""Lesson 1 exercises - yours to edit. Replace each `raise NotImplementedError(...)` with your code.

Grade with `make grade` from the repository root (or: python -m course.grade notebooks/exercises --lesson lesson01).
"""
import torch


def forward_noise(x0, eps, abar_t):
    """The forward process: x_t = sqrt(abar_t) * x0 + sqrt(1 - abar_t) * eps.

    Args: x0 [N, d] clean data; eps [N, d] standard normal noise; abar_t a number or an [N] tensor
    (one value per row). Returns x_t [N, d].
    """
    raise NotImplementedError("hint: make abar_t broadcast over the rows: torch.as_tensor(abar_t).reshape(-1, 1)")


def eps_loss(eps_net, x0, t, eps, abar):
    """Algorithm 1, one batch: mean over the batch and dimensions of || eps - eps_net(x_t, t) ||^2.

    Args: eps_net a callable (x_t [N, d], t [N]) -> [N, d]; x0 [N, d]; t [N] integer timesteps
    in 1..T; eps [N, d]; abar [T] with abar[t - 1] = abar_t. The network takes the 1-based t as given.
    Returns a 0-d tensor.
    """
    raise NotImplementedError("hint: look up abar[t - 1], build x_t with forward_noise's formula, then a mean squared error")


def ancestral_step(x_t, eps_pred, t, betas, z):
    """Algorithm 2, line 4: x_{t-1} = 1/sqrt(alpha_t) (x_t - (1 - alpha_t)/sqrt(1 - abar_t) eps_pred) + sigma_t z,

    with alpha_t = 1 - beta_t, abar_t = prod_{s<=t} alpha_s, sigma_t = sqrt(beta_t), and no noise
    at the last step (t = 1). Args: x_t, eps_pred, z [N, d]; t an int in 1..T; betas [T] with
    betas[t - 1] = beta_t. Returns x_{t-1} [N, d].
    """
    raise NotImplementedError("hint: abar_t = torch.cumprod(1 - betas, 0)[t - 1]; skip sigma_t z when t == 1")


def mixture_score(x, weights, means, covs, sigma):
    """The exact score grad_x log p(x; sigma) of a Gaussian mixture noised with std sigma.

    p(x; sigma) = sum_k w_k N(x; mu_k, C_k + sigma^2 I). Args: x [N, d]; weights [K]; means [K, d];
    covs [K, d, d]; sigma a number. Returns [N, d]:
        score(x) = sum_k r_k(x) (C_k + sigma^2 I)^-1 (mu_k - x),  r_k = w_k N_k(x) / sum_j w_j N_j(x).
    Compute r_k with log-densities and a softmax, or points far away give 0/0 = NaN.
    """
    raise NotImplementedError("hint: torch.distributions.MultivariateNormal(means, covs + sigma**2 * I).log_prob(x[:, None]) gives [N, K]")
