"""Checks for lesson 3."""
import torch

from ..checking import expect, expect_tensor, fmt

D_U = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
D_C = torch.tensor([[1.0, 1.5], [0.0, 0.0]])


def check_cfg(fn):
    for w in (0.0, 1.0, 3.0):
        expect_tensor(fn(D_U, D_C, w), D_U + w * (D_C - D_U), f"cfg(D_u={fmt(D_U)}, D_c={fmt(D_C)}, w={w})"
                      + (" (w = 1 must return D_c: no guidance)" if w == 1 else ""))


def check_cfg_original(fn):
    for w in (0.0, 2.0):
        expect_tensor(fn(D_U, D_C, w), D_C + w * (D_C - D_U), f"cfg_original(D_u={fmt(D_U)}, D_c={fmt(D_C)}, w_original={w})"
                      + (" (w' = 0 must return D_c: no guidance)" if w == 0 else ""))


def check_original_to_lerp(fn):
    for w_orig in (0.0, 1.5, 6.0):
        got = fn(w_orig)
        expect(isinstance(got, (int, float)) or torch.is_tensor(got), f"original_to_lerp({w_orig}) should return a number; got {type(got).__name__}")
        expect(abs(float(got) - (w_orig + 1)) < 1e-9,
               f"original_to_lerp({w_orig}) = {float(got)}: with that w, D_u + w (D_c - D_u) must equal D_c + {w_orig} (D_c - D_u); expected {w_orig + 1}")
