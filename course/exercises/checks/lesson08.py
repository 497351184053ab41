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
