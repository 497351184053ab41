"""Lesson 1 reference solutions."""
import torch


def forward_noise(x0, eps, abar_t):
    abar_t = torch.as_tensor(abar_t, dtype=x0.dtype).reshape(-1, *([1] * (x0.ndim - 1)))
    return abar_t.sqrt() * x0 + (1 - abar_t).sqrt() * eps


def eps_loss(eps_net, x0, t, eps, abar):
    x_t = forward_noise(x0, eps, abar[t - 1])
    return ((eps - eps_net(x_t, t)) ** 2).mean()


def ancestral_step(x_t, eps_pred, t, betas, z):
    beta = betas[t - 1]
    abar = torch.cumprod(1 - betas, dim=0)[t - 1]
    mean = (x_t - beta / (1 - abar).sqrt() * eps_pred) / (1 - beta).sqrt()
    return mean + beta.sqrt() * z if t > 1 else mean


def mixture_score(x, weights, means, covs, sigma):
    d = x.shape[1]
    cov = covs + sigma**2 * torch.eye(d, dtype=covs.dtype)
    log_n = torch.distributions.MultivariateNormal(means, cov).log_prob(x.unsqueeze(1))  # [N, K]
    r = torch.softmax(torch.log(weights) + log_n, dim=1)  # responsibilities, stable
    diff = torch.linalg.solve(cov, (means.unsqueeze(0) - x.unsqueeze(1)).unsqueeze(-1)).squeeze(-1)  # [N, K, d]
    return (r.unsqueeze(-1) * diff).sum(dim=1)
