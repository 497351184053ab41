"""Checks for lesson 4."""
import math

import torch

from ..checking import expect_tensor


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
