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


def check_drop_labels(fn):
    y = torch.arange(4).repeat(5_000)  # 20,000 labels, classes 0..3
    y_before = y.clone()
    for p in (0.0, 1.0):
        out = fn(y, p, torch.Generator().manual_seed(0))
        expected = y if p == 0 else torch.full_like(y, -1)
        expect(isinstance(out, torch.Tensor) and out.shape == y.shape, f"drop_labels(y of shape {list(y.shape)}, p={p}) "
               f"should return a tensor of the same shape")
        expect(torch.equal(out.long(), expected), f"drop_labels(y, p={p}) should return "
               + ("the labels unchanged (no dropout)" if p == 0 else "-1 everywhere (every label dropped)")
               + f"; got {fmt(out[:8])}... for y = {fmt(y[:8])}...")
    expect(torch.equal(y, y_before), "drop_labels changed the labels it was given: return a new tensor (the caller "
           "still needs its own labels)")
    p = 0.2
    out = fn(y, p, torch.Generator().manual_seed(1))
    dropped = out == -1
    expect(bool(((out == y) | dropped).all()), f"drop_labels(y, p={p}) changed labels to something other than -1: "
           f"a label is either kept or replaced by the null label -1")
    rate = dropped.double().mean().item()
    # 20,000 independent draws: the dropped fraction has std sqrt(0.2 * 0.8 / 20000) = 0.0028; 0.015 is 5 std
    expect(abs(rate - p) < 0.015, f"drop_labels(20,000 labels, p={p}) dropped a fraction {rate:.4f}; expected about {p} "
           "(each label dropped with probability p)")
    for c in range(4):
        rate_c = dropped[y == c].double().mean().item()
        expect(abs(rate_c - p) < 0.03, f"drop_labels(y, p={p}) dropped a fraction {rate_c:.3f} of class {c}; every class "
               f"should lose about {p} of its labels (the draw must not depend on the class)")
    runs = dropped.view(-1, 4)
    expect(0 < runs.all(1).double().mean().item() < 0.01, f"drop_labels(y, p={p}): the four labels of each group of "
           "neighbours were dropped together too often (or never): each label needs its own random draw")
    again = fn(y, p, torch.Generator().manual_seed(1))
    expect(torch.equal(again, out), f"drop_labels(y, p={p}, generator seeded 1) twice gave different labels: draw "
           "the random numbers from the generator you are given")
    other = fn(y, p, torch.Generator().manual_seed(2))
    expect(not torch.equal(other, out), f"drop_labels(y, p={p}) gave the same labels for generators seeded 1 and 2: draw "
           "the random numbers from the generator you are given")
