"""Checks for lesson 1."""
import torch

from ...mixtures import GaussianMixture
from ..checking import expect, expect_tensor, fmt


def check_forward_noise(fn):
    x0 = torch.tensor([[1.0, 2.0], [-1.0, 0.5]])
    eps = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    expect_tensor(fn(x0, eps, 0.64), torch.tensor([[1.1, 1.0], [0.4, 0.4]]),
                  f"forward_noise(x0={fmt(x0)}, eps={fmt(eps)}, abar_t=0.64)")
    abar = torch.tensor([1.0, 0.0])
    expect_tensor(fn(x0, eps, abar), torch.tensor([[1.0, 2.0], [2.0, 0.0]]),
                  f"forward_noise(x0={fmt(x0)}, eps={fmt(eps)}, abar_t={fmt(abar)}) (one abar per row: row 0 keeps x0, row 1 is pure noise)")


def check_eps_loss(fn):
    abar = torch.tensor([0.9, 0.5, 0.1])
    x0 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    eps = torch.tensor([[0.0, 1.0], [1.0, -1.0]])
    t = torch.tensor([1, 3])
    seen = {}

    def net(x_t, t_in):
        seen["x_t"], seen["t"] = x_t.clone(), torch.as_tensor(t_in).clone()
        return 0.5 * x_t
    call = f"eps_loss(net = lambda x_t, t: 0.5 * x_t, x0={fmt(x0)}, t={fmt(t)}, eps={fmt(eps)}, abar={fmt(abar)})"
    loss = fn(net, x0, t, eps, abar)
    ab = abar[t - 1].unsqueeze(1)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    expect("x_t" in seen, f"{call} never called the network")
    expect_tensor(seen["x_t"], x_t, f"{call}: the x_t passed to the network (abar_t = abar[t - 1])")
    expect_tensor(torch.as_tensor(loss).reshape(()), ((eps - 0.5 * x_t) ** 2).mean(), call)


def check_ancestral_step(fn):
    betas = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    x = torch.tensor([[1.0, -1.0], [0.5, 2.0]], dtype=torch.float64)
    e = torch.tensor([[0.2, 0.1], [-0.3, 0.4]], dtype=torch.float64)
    z = torch.tensor([[1.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0)
    for t in (3, 1):
        b, ab = betas[t - 1], abar[t - 1]
        want = (x - b / (1 - ab).sqrt() * e) / (1 - b).sqrt() + (b.sqrt() * z if t > 1 else 0)
        note = " (t = 1 is the last step: no noise)" if t == 1 else ""
        expect_tensor(fn(x, e, t, betas, z), want, f"ancestral_step(x_t={fmt(x)}, eps_pred={fmt(e)}, t={t}, betas={fmt(betas)}, z={fmt(z)}){note}")


def check_mixture_score(fn):
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(3, 2, 2, generator=gen, dtype=torch.float64) * 0.3
    covs = A @ A.transpose(1, 2) + 0.01 * torch.eye(2, dtype=torch.float64)
    means = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-1.0, 0.5]], dtype=torch.float64)
    weights = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    gm = GaussianMixture(weights, means, covs)
    x = torch.tensor([[0.1, 0.2], [1.0, 0.9], [-0.5, 0.0], [30.0, -40.0]], dtype=torch.float64)
    for sigma in (0.05, 0.5, 2.0):
        got = fn(x, weights, means, covs, sigma)
        expect_tensor(got, gm.score(x, sigma), f"mixture_score(x={fmt(x)}, weights={fmt(weights)}, 3 full-covariance components, sigma={sigma}) "
                      "(the last point is far from the data: use log-densities)", atol=1e-6, rtol=1e-5)
