"""Checks for lesson 4."""
import math

import torch

from ..checking import expect_tensor, fmt


def check_self_attention(fn):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 4, generator=g) for _ in range(3))
    want = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(4), dim=-1) @ v
    expect_tensor(fn(q, k, v), want, "self_attention(q, k, v) for random q, k, v of shape [2, 3, 4] "
                  "(softmax over keys, logits divided by sqrt(d) = 2)")
    expect_tensor(fn(q, k, v, perturb=True), v, "self_attention(q, k, v, perturb=True): the identity map, output = v")
    big = torch.full((1, 2, 2), 100.0)
    expect_tensor(fn(big, big, torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])), torch.tensor([[[2.0, 3.0], [2.0, 3.0]]]),
                  "self_attention with large equal logits (q = k = 100): use a softmax, not exp / sum, to avoid overflow")


def check_pag_cfg(fn):
    D_c = torch.tensor([[1.0, 0.0], [0.5, 2.0]])
    D_u = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    D_ptb = torch.tensor([[0.5, 1.0], [0.5, 0.0]])
    args = f"D_c={fmt(D_c)}, D_u={fmt(D_u)}, D_ptb={fmt(D_ptb)}"
    expect_tensor(fn(D_c, D_u, D_ptb, 1.0, 1.0), D_c, f"pag_cfg({args}, w_cfg=1, w_pag=1) (both off: the conditional model)")
    expect_tensor(fn(D_c, D_u, D_ptb, 3.0, 1.0), D_u + 3.0 * (D_c - D_u), f"pag_cfg({args}, w_cfg=3, w_pag=1) (PAG off: plain CFG)")
    expect_tensor(fn(D_c, D_u, D_ptb, 1.0, 2.5), D_ptb + 2.5 * (D_c - D_ptb), f"pag_cfg({args}, w_cfg=1, w_pag=2.5) (CFG off: plain PAG)")
    expect_tensor(fn(D_c, D_u, D_ptb, 2.0, 3.0), D_u + 2.0 * (D_c - D_u) + 2.0 * (D_c - D_ptb),
                  f"pag_cfg({args}, w_cfg=2, w_pag=3) (both on: the two pushes add)")
