"""Every sampler, driven by the exact denoiser, must reproduce the mixture (a two-sample test)."""
import pytest
import torch

from course import conversions as cv
from course import metrics, presets, samplers

N = 4000
GM = presets.tree(depth=4)
BETAS = cv.linear_betas(1000)
# Measured on this (paper's, 4-level) tree at N = 4000: exact vs exact |mean log p difference| 0.02,
# MMD^2 (h = 0.05) 2e-6; the samplers 0.003 (Heun 32) to 0.19 (DDIM 200), MMD^2 <= 1.5e-4. Leaving a
# noise of std 0.02 in the samples moves mean log p by 1.4 and MMD^2 to 4.9e-4.
LOGP_MAX, MMD_MAX = 0.3, 4e-4


def run(name):
    g = torch.Generator().manual_seed(3)
    x_T = torch.randn(N, 2, generator=g, dtype=torch.float64)
    if name == "edm_heun":
        return samplers.edm_heun(GM, x_T * 80, samplers.edm_sigmas(32))
    if name == "edm_euler":
        return samplers.edm_euler(GM, x_T * 80, samplers.edm_sigmas(256))
    if name == "ddpm":
        return samplers.ddpm(GM, x_T, BETAS, generator=g)
    if name == "ddim":
        return samplers.ddim(GM, x_T, cv.alphas_cumprod(BETAS), steps=200)
    raise KeyError(name)


def distances(x):
    """(|mean exact log p of x - that of exact samples|, MMD^2 with a 0.05 bandwidth)."""
    ref = GM.sample(N, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return abs(metrics.mean_log_prob(GM, x) - metrics.mean_log_prob(GM, ref)), metrics.mmd(x, ref, bandwidth=0.05)


@pytest.mark.parametrize("name", ["edm_heun", "edm_euler", "ddpm", "ddim"])
def test_sampler_with_exact_denoiser_reproduces_the_mixture(name):
    dlogp, mmd = distances(run(name))
    assert dlogp < LOGP_MAX and mmd < MMD_MAX, f"{name}: mean log p off by {dlogp:.3f} (max {LOGP_MAX}), MMD^2 {mmd:.2e} (max {MMD_MAX})"


def test_the_two_sample_test_can_fail():
    """Negative control: samples with a little noise left in (std 0.02) are rejected."""
    dlogp, mmd = distances(GM.sample(N, sigma=0.02, generator=torch.Generator().manual_seed(4), dtype=torch.float64))
    assert dlogp > LOGP_MAX or mmd > MMD_MAX


def test_heun_uses_2n_minus_1_calls_and_trajectory_shapes():
    calls = []

    def D(x, sigma, y=None):
        calls.append(float(sigma))
        return GM(x, sigma, y)

    x, traj = samplers.edm_heun(D, torch.randn(10, 2) * 80, samplers.edm_sigmas(32), trajectory=True)
    assert len(calls) == 63 and traj.shape == (33, 10, 2) and torch.equal(traj[-1], x)


def test_edm_sigmas_follow_the_formula():
    s = samplers.edm_sigmas(32, 0.002, 80, 7)
    assert s.shape == (33,) and s[-1] == 0
    torch.testing.assert_close(s[[0, 31]], torch.tensor([80.0, 0.002], dtype=torch.float64))


def test_samplers_are_reproducible_with_a_seed():
    a = samplers.sample(GM, 50, 2, seed=7, steps=8)
    b = samplers.sample(GM, 50, 2, seed=7, steps=8)
    assert torch.equal(a, b)
    x_T = torch.randn(20, 2)
    assert torch.equal(samplers.ddpm(GM, x_T, BETAS[:50], generator=torch.Generator().manual_seed(0)),
                       samplers.ddpm(GM, x_T, BETAS[:50], generator=torch.Generator().manual_seed(0)))
