"""The probability-flow ODE density of a denoiser reproduces the exact mixture's log-density."""
import torch

from course import likelihood, presets


def test_ode_log_prob_of_the_exact_denoiser_matches_the_closed_form():
    gm = presets.two_moons()
    x = torch.randn(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 0.6
    err = (likelihood.ode_log_prob(gm, x, 0.3, steps=64) - gm.log_prob(x, 0.3)).abs()
    assert err.max() < 0.05 and err.median() < 0.01, err.max()
