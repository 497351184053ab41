"""Checks for lesson 5."""
import torch

from ..checking import expect, expect_tensor, fmt


def check_autoguidance(fn):
    main = torch.tensor([[1.0, 2.0], [0.5, 0.0]])
    guide = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    expect_tensor(fn(main, guide, 1.0), main, f"autoguidance(D_main={fmt(main)}, D_guide={fmt(guide)}, w=1.0) (w = 1 is the main model alone)")
    expect_tensor(fn(main, guide, 3.0), guide + 3.0 * (main - guide), f"autoguidance(D_main={fmt(main)}, D_guide={fmt(guide)}, w=3.0)")
    w = torch.tensor([2.0, 0.0])
    expect_tensor(fn(main, guide, w), guide + w.reshape(-1, 1) * (main - guide), f"autoguidance(D_main={fmt(main)}, D_guide={fmt(guide)}, w={fmt(w)}) (one w per row)")


def check_interval_scale(fn):
    sigma = torch.tensor([80.0, 5.0, 4.999, 2.0, 1.0, 1.001, 0.5, 0.002], dtype=torch.float64)
    call = f"interval_scale(sigma={fmt(sigma)}, w=3.0, sigma_lo=1.0, sigma_hi=5.0)"
    got = fn(sigma, 3.0, 1.0, 5.0)
    expect(isinstance(got, torch.Tensor) and got.shape == sigma.shape,
           f"{call} should return a tensor of shape {list(sigma.shape)}, one scale per row")
    far_outside = got[[0, 6, 7]].double()   # sigma = 80, 0.5, 0.002: outside (1, 5] whichever end is included
    expect(not (far_outside == 0).any(),
           f"{call} returned 0 outside the interval: at w = 0, D_guide + w (D_main - D_guide) is the guide alone - the "
           "weak model. No guidance is the scale at which the formula gives the main model")
    expect_tensor(got, torch.tensor([1.0, 3.0, 3.0, 3.0, 1.0, 3.0, 1.0, 1.0], dtype=torch.float64),
                  call + " (sigma_hi = 5 is inside the interval, sigma_lo = 1 is not)")
    s32 = torch.tensor([0.1, 0.3, 3.0], dtype=torch.float32)
    got = fn(s32, 2.5, 0.28, 2.9)
    expect_tensor(got, torch.tensor([1.0, 2.5, 1.0], dtype=torch.float64),
                  f"interval_scale(sigma={fmt(s32)} (float32), w=2.5, sigma_lo=0.28, sigma_hi=2.9)")
