"""The exact 2-D world: every quantity proven against an independent computation."""
import math

import pytest
import torch

from course import presets
from course.mixtures import GaussianMixture

SIGMAS = [0.002, 0.05, 0.3, 1.0, 5.0]


def random_mixture(K=5, d=2, seed=0, classes=2):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(K, d, d, generator=g, dtype=torch.float64) * 0.3
    covs = A @ A.transpose(1, 2) + 0.01 * torch.eye(d, dtype=torch.float64)
    return GaussianMixture(torch.rand(K, generator=g, dtype=torch.float64) + 0.1,
                           torch.randn(K, d, generator=g, dtype=torch.float64), covs, torch.arange(K) % classes)


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("sigma", SIGMAS)
def test_log_prob_matches_torch_distributions(sigma, d):
    gm = random_mixture(d=d)
    x = torch.randn(50, d, dtype=torch.float64)
    comps = torch.distributions.MultivariateNormal(gm.means, gm.covs + sigma**2 * torch.eye(d, dtype=torch.float64))
    ref = torch.logsumexp(comps.log_prob(x.unsqueeze(1)) + gm.weights.log(), dim=1)
    torch.testing.assert_close(gm.log_prob(x, sigma), ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("sigma", SIGMAS)
def test_score_is_autograd_gradient_of_log_prob(sigma):
    gm = random_mixture()
    x = torch.randn(64, 2, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(gm.log_prob(x, sigma).sum(), x)
    torch.testing.assert_close(gm.score(x.detach(), sigma), grad, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("sigma", SIGMAS)
def test_conditional_score_is_gradient_of_class_mixture(sigma):
    gm = random_mixture()
    x = torch.randn(32, 2, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(gm.condition(1).log_prob(x, sigma).sum(), x)
    torch.testing.assert_close(gm.score(x.detach(), sigma, y=torch.ones(32, dtype=torch.long)), grad, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("sigma", SIGMAS)
def test_denoise_is_tweedie(sigma):
    gm = random_mixture()
    x = torch.randn(40, 2, dtype=torch.float64)
    torch.testing.assert_close(gm.denoise(x, sigma), x + sigma**2 * gm.score(x, sigma))
    torch.testing.assert_close(gm(x, sigma), gm.denoise(x, sigma))


def test_denoiser_is_posterior_mean_by_monte_carlo():
    """D(x; sigma) = E[x0 | x]: check it by importance-weighting exact x0 samples."""
    gm = random_mixture(K=3)
    sigma, x = 0.4, torch.tensor([[0.3, -0.2]], dtype=torch.float64)
    x0 = gm.sample(400_000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    w = torch.softmax(-((x - x0) ** 2).sum(1) / (2 * sigma**2), dim=0)
    torch.testing.assert_close(gm.denoise(x, sigma), (w.unsqueeze(1) * x0).sum(0, keepdim=True), atol=0.01, rtol=0)


@pytest.mark.parametrize("sigma", SIGMAS)
def test_class_posterior_is_bayes_rule(sigma):
    gm = random_mixture(classes=3, K=6)
    x = torch.randn(30, 2, dtype=torch.float64)
    post = gm.class_posterior(x, sigma)
    torch.testing.assert_close(post.sum(1), torch.ones(30, dtype=torch.float64))
    # Bayes: p(y | x) = p(y) p(x | y) / p(x)
    bayes = torch.stack([gm.class_weights[c].log() + gm.condition(c).log_prob(x, sigma) for c in range(3)], 1) - gm.log_prob(x, sigma).unsqueeze(1)
    torch.testing.assert_close(post.log(), bayes, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(gm.log_class_prob(x, sigma, torch.full((30,), 2)), bayes[:, 2], rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("sigma", [0.002, 1.0])
def test_finite_far_from_data_and_at_tiny_sigma(sigma):
    gm = presets.tree(depth=4)
    x = torch.tensor([[1e4, -1e4], [300.0, 0.0], [0.0, 0.0]], dtype=torch.float32)
    for value in (gm.log_prob(x, sigma), gm.score(x, sigma), gm.denoise(x, sigma), gm.class_posterior(x, sigma)):
        assert torch.isfinite(value).all(), value
    # far away the score of any Gaussian mixture points back toward the data, ~ -x / var
    assert (gm.score(x[:1], sigma) * x[:1]).sum() < 0


def test_float32_and_float64_agree():
    gm = presets.ring()
    x64 = torch.randn(100, 2, dtype=torch.float64)
    s64 = gm.score(x64, 0.002)
    s32 = gm.score(x64.float(), 0.002)
    assert s32.dtype == torch.float32
    torch.testing.assert_close(s32.double(), s64, rtol=1e-5, atol=1e-3)


def test_per_row_sigma_equals_separate_calls():
    gm = random_mixture()
    x = torch.randn(6, 2, dtype=torch.float64)
    sig = torch.tensor([0.1, 0.5, 0.1, 2.0, 0.5, 0.1], dtype=torch.float64)
    per_row = gm.denoise(x, sig)
    for i in range(6):
        torch.testing.assert_close(per_row[i], gm.denoise(x[i : i + 1], sig[i].item())[0])


def test_sampling_matches_moments():
    gm = random_mixture(K=3)
    x = gm.sample(200_000, sigma=0.5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mean = (gm.weights.unsqueeze(1) * gm.means).sum(0)
    cov = sum(w * (C + torch.outer(m - mean, m - mean)) for w, m, C in zip(gm.weights, gm.means, gm.covs)) + 0.25 * torch.eye(2, dtype=torch.float64)
    torch.testing.assert_close(x.mean(0), mean, atol=0.01, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), cov, atol=0.02, rtol=0)


def test_condition_and_null_label():
    gm = random_mixture()
    x = torch.randn(10, 2, dtype=torch.float64)
    torch.testing.assert_close(gm.score(x, 0.3, y=torch.zeros(10, dtype=torch.long)), gm.condition(0).score(x, 0.3))
    torch.testing.assert_close(gm.score(x, 0.3, y=torch.full((10,), -1)), gm.score(x, 0.3))  # -1: no condition


def test_a_smaller_tree_is_the_same_recursion_cut_short():
    small, full = presets.tree(depth=4), presets.tree()
    assert small.num_components == 2 * 15 * 8 and (small.labels == 0).sum() == 15 * 8
    torch.testing.assert_close(small.means[:8], full.means[:8])  # the root branch of A is the same


def test_fit_to_points_learns_both_classes():
    gm = presets.two_moons(n_components=6)
    assert gm.num_classes == 2 and gm.num_components == 12
    torch.testing.assert_close(gm.class_weights, torch.tensor([0.5, 0.5], dtype=torch.float64), atol=1e-6, rtol=0)


@pytest.mark.parametrize("bad, message", [
    (dict(weights=[1.0], means=[[0.0, 0.0]], covs=[[[1.0, 0.0], [0.0, -1.0]]]), "positive definite"),
    (dict(weights=[1.0, 1.0], means=[[0.0, 0.0]], covs=[[[1.0, 0.0], [0.0, 1.0]]]), "weights must be"),
    (dict(weights=[math.nan], means=[[0.0, 0.0]], covs=[[[1.0, 0.0], [0.0, 1.0]]]), "NaN"),
])
def test_bad_construction_is_explained(bad, message):
    with pytest.raises(ValueError, match=message):
        GaussianMixture(**bad)


def test_wrong_shapes_are_explained():
    gm = presets.ring()
    with pytest.raises(ValueError, match=r"x must have shape \[N, 2\]"):
        gm.score(torch.zeros(5, 3), 0.1)
    with pytest.raises(ValueError, match="sigma must be a number or a tensor of shape"):
        gm.score(torch.zeros(5, 2), torch.ones(4))
    with pytest.raises(ValueError, match="no class labels"):
        presets.fit(torch.randn(200, 2), 2).condition(0)
