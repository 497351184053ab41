"""Checks for lesson 8."""
import torch

from ..checking import expect, expect_tensor, fmt


def check_apg_project(fn):
    delta = torch.tensor([[1.0, 1.0], [0.0, 2.0], [3.0, -1.0]], dtype=torch.float64)
    D_c = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    call = f"apg_project(delta={fmt(delta)}, D_c={fmt(D_c)})"
    out = fn(delta, D_c)
    expect(isinstance(out, tuple) and len(out) == 2, f"{call} should return a pair (delta_par, delta_orth); got {type(out).__name__}")
    par, orth = out
    want_par = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], dtype=torch.float64)
    expect_tensor(par, want_par, call + " -> delta_par (row 2: delta is along D_c, so all of it is parallel)")
    expect_tensor(orth, delta - want_par, call + " -> delta_orth = delta - delta_par")
    img_d, img_c = torch.ones(2, 1, 2, 2, dtype=torch.float64), torch.arange(8.0, dtype=torch.float64).reshape(2, 1, 2, 2) + 1
    coef = (img_d * img_c).flatten(1).sum(1) / (img_c * img_c).flatten(1).sum(1)
    par, _ = fn(img_d, img_c)
    expect_tensor(par, coef.reshape(-1, 1, 1, 1) * img_c, "apg_project on images [2, 1, 2, 2] (one inner product per image, over all its pixels)")


def check_cfg_zero_scale(fn):
    v_c = torch.tensor([[1.0, 0.0], [2.0, 2.0], [0.0, 1.0]], dtype=torch.float64)
    v_u = torch.tensor([[2.0, 0.0], [1.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    want = (v_c * v_u).sum(1) / ((v_u * v_u).sum(1) + 1e-8)
    expect_tensor(fn(v_c, v_u), want, f"cfg_zero_scale(v_c={fmt(v_c)}, v_u={fmt(v_u)}) (orthogonal rows give 0)")
    z = torch.zeros(1, 2, dtype=torch.float64)
    expect_tensor(fn(torch.ones(1, 2, dtype=torch.float64), z), torch.zeros(1, dtype=torch.float64),
                  "cfg_zero_scale(v_c=[[1, 1]], v_u=[[0, 0]]) (the 1e-8 keeps a zero v_u finite)")


def _finite_difference_grad(fn, x0, h=1e-5):
    """grad of fn ([N, d] -> [N]) at x0 by central differences, coordinate by coordinate: the
    learner's function runs in its own process, where no autograd graph can reach the check."""
    g = torch.zeros_like(x0)
    for j in range(x0.shape[1]):
        step = torch.zeros_like(x0)
        step[:, j] = h
        g[:, j] = (fn(x0 + step) - fn(x0 - step)) / (2 * h)
    return g


def check_region_loss(fn):
    from ...alternatives import LossGuidance
    from ...presets import two_moons
    from ...samplers import sample

    moons = two_moons()
    x0 = torch.tensor([[1.5, 0.0], [0.0, 0.5]], dtype=torch.float64)
    out = fn(x0)
    expect(isinstance(out, torch.Tensor) and out.shape == (2,),
           f"region_loss(x0 of shape [2, 2]) should return one loss per point, shape [2]; got "
           f"{list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}")
    expect(bool(torch.isfinite(out).all()), f"region_loss(x0={fmt(x0)}) returned {fmt(out)}: NaN or inf")
    guided = LossGuidance(moons, fn, 1.0, loss_grad=lambda D: _finite_difference_grad(fn, D))
    x = sample(guided, 1000, 2, steps=32, seed=0, dtype=torch.float64)
    inside = (x[:, 0] > 0.8).double().mean().item()
    on_data = (moons.log_prob(x) > -3).double().mean().item()
    expect(inside >= 0.85, f"with LossGuidance(moons, region_loss, w=1), 1000 samples (32 Heun steps, seed 0): only "
                           f"{inside:.0%} land at x_1 > 0.8 (unguided: about 15%); at least 85% should. Check the sign "
                           "(the loss must be large where x_1 < 0.8), that it changes smoothly (a step has no slope to "
                           "follow), and pull harder")
    expect(on_data >= 0.9, f"with LossGuidance(moons, region_loss, w=1): {inside:.0%} land at x_1 > 0.8, but only "
                           f"{on_data:.0%} stay on the data (exact log p > -3); at least 90% should. The pull is too "
                           "strong: it drags samples off the moons")
