"""Checks for lesson 0."""
import torch

from ..checking import expect, fmt


def check_sample_mixture(fn):
    weights = torch.tensor([0.2, 0.8])
    means = torch.tensor([[-2.0, 0.0], [3.0, 1.0]])
    stds = torch.tensor([0.5, 0.1])
    n = 20000
    call = f"sample_mixture(weights={fmt(weights)}, means={fmt(means)}, stds={fmt(stds)}, n={n})"
    x = fn(weights, means, stds, n, generator=torch.Generator().manual_seed(0))
    expect(isinstance(x, torch.Tensor), f"{call} should return a torch.Tensor; got {type(x).__name__}")
    expect(tuple(x.shape) == (n, 2), f"{call} should return shape [{n}, 2]; got {list(x.shape)}")
    expect(bool(torch.isfinite(x).all()), f"{call} returned NaN or inf")
    near = (x.unsqueeze(1) - means).norm(dim=2).argmin(dim=1)  # which centre each point is nearest to
    frac = (near == 1).float().mean().item()
    expect(abs(frac - 0.8) < 0.02, f"{call}: about 80% of points should come from component 1 (centre [3, 1]); got {100 * frac:.1f}%")
    for k in range(2):
        pts = x[near == k]
        m, s = pts.mean(0), pts.std(0)
        expect((m - means[k]).abs().max() < 0.05, f"{call}: points of component {k} should centre on {fmt(means[k])}; their mean is {fmt(m)}")
        expect(((s - stds[k]).abs() / stds[k]).max() < 0.1, f"{call}: component {k} should have std {stds[k]:.2f} per axis; got {fmt(s)}")
    again = fn(weights, means, stds, 100, generator=torch.Generator().manual_seed(1))
    again2 = fn(weights, means, stds, 100, generator=torch.Generator().manual_seed(1))
    expect(torch.equal(again, again2), "sample_mixture(..., generator=torch.Generator().manual_seed(1)) gave different points on two calls: pass `generator` to every random function")
    other = fn(weights, means, stds, 100, generator=torch.Generator().manual_seed(2))
    expect(not torch.equal(again, other), "sample_mixture(..., generator=torch.Generator().manual_seed(1)) and (..., manual_seed(2)) "
           "gave the same points: your code ignores `generator` (seeding torch's global generator instead?); pass it to "
           "every random function")
