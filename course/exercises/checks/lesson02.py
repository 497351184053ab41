"""Checks for lesson 2."""
import torch

from ...presets import two_moons
from ..checking import expect_tensor, fmt


def check_classifier_guidance(fn):
    D = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    g = torch.tensor([[0.5, -0.5], [2.0, 1.0]])
    expect_tensor(fn(D, g, 2.0, 3.0), D + 3.0 * 4.0 * g, f"classifier_guidance(D_x={fmt(D)}, grad_log_p_y={fmt(g)}, sigma=2.0, w=3.0)")
    s = torch.tensor([1.0, 0.5])
    expect_tensor(fn(D, g, s, 1.0), D + s.reshape(-1, 1) ** 2 * g,
                  f"classifier_guidance(D_x={fmt(D)}, grad_log_p_y={fmt(g)}, sigma={fmt(s)} (one per row), w=1.0)")
    # with the exact mixture: w = 1 turns the unconditional denoiser into the conditional one
    gm = two_moons()
    x = torch.tensor([[0.2, 0.1], [-0.5, 0.4], [0.9, -0.3]], dtype=torch.float64)
    y = torch.tensor([0, 1, 1])
    got = fn(gm.denoise(x, 0.3), gm.grad_log_class_prob(x, 0.3, y), 0.3, 1.0)
    expect_tensor(got, gm.denoise(x, 0.3, y), "classifier_guidance with the exact two-moons mixture at sigma = 0.3, w = 1 "
                  "(should equal the exact conditional denoiser, by Bayes' rule)", atol=1e-8)
