"""Checks for lesson 5."""
import torch

from ..checking import expect_tensor, fmt


def check_autoguidance(fn):
    main = torch.tensor([[1.0, 2.0], [0.5, 0.0]])
    guide = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    expect_tensor(fn(main, guide, 1.0), main, f"autoguidance(D_main={fmt(main)}, D_guide={fmt(guide)}, w=1.0) (w = 1 is the main model alone)")
    expect_tensor(fn(main, guide, 3.0), guide + 3.0 * (main - guide), f"autoguidance(D_main={fmt(main)}, D_guide={fmt(guide)}, w=3.0)")
    w = torch.tensor([2.0, 0.0])
    expect_tensor(fn(main, guide, w), guide + w.reshape(-1, 1) * (main - guide), f"autoguidance(D_main={fmt(main)}, D_guide={fmt(guide)}, w={fmt(w)}) (one w per row)")
