"""Checks for lesson 9."""
import torch

from ..checking import expect_tensor, fmt


def check_fk_log_weight_increment(fn):
    D_c = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.2, -0.1]], dtype=torch.float64)
    D_u = torch.tensor([[0.0, 0.0], [0.5, 0.5], [0.0, 0.3]], dtype=torch.float64)
    def want(w, s, s_next):
        return w * (w - 1) * (s**2 - s_next**2) / 2 * ((D_c - D_u) ** 2).sum(1) / s**4
    call = f"fk_log_weight_increment(D_c={fmt(D_c)}, D_u={fmt(D_u)}, w={{w}}, sigma={{s}}, sigma_next={{sn}})"
    expect_tensor(fn(D_c, D_u, 1.0, 0.5, 0.4), torch.zeros(3, dtype=torch.float64),
                  call.format(w=1.0, s=0.5, sn=0.4) + " (w = 1 is no guidance: every weight stays equal)")
    expect_tensor(fn(D_c, D_u, 3.0, 0.5, 0.4), want(3.0, 0.5, 0.4), call.format(w=3.0, s=0.5, sn=0.4)
                  + " (a row whose two denoisers agree gets 0)")
    expect_tensor(fn(D_c, D_u, 2.0, 2.0, 0.0), want(2.0, 2.0, 0.0), call.format(w=2.0, s=2.0, sn=0.0)
                  + " (the last step, to sigma = 0)")
    expect_tensor(fn(D_c, D_u, 0.5, 0.3, 0.2), want(0.5, 0.3, 0.2), call.format(w=0.5, s=0.3, sn=0.2)
                  + " (0 < w < 1: the increment is negative)")


def check_effective_sample_size(fn):
    equal = torch.zeros(2, 5, dtype=torch.float64)
    expect_tensor(fn(equal), torch.full((2,), 5.0, dtype=torch.float64), f"effective_sample_size(logw={fmt(equal)}) (equal weights)")
    lw = torch.tensor([[0.0, 0.0, -1e9, -1e9], [1.0, 0.0, -1.0, 2.0]], dtype=torch.float64)
    p = torch.softmax(lw, -1)
    expect_tensor(fn(lw), 1 / (p**2).sum(-1), f"effective_sample_size(logw={fmt(lw)})")
    big = torch.tensor([[1000.0, 999.0, 0.0]], dtype=torch.float64)
    p = torch.softmax(big, -1)
    expect_tensor(fn(big), 1 / (p**2).sum(-1), f"effective_sample_size(logw={fmt(big)}) (large log-weights: exp overflows, use softmax)")
