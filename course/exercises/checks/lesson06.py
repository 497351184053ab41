"""Checks for lesson 6."""
import torch

from ..checking import expect


def check_mask_logits(fn):
    logits = torch.randn(8, 2, 16, 16, generator=torch.Generator().manual_seed(0))
    for offdiag in (False, True):
        call = f"mask_logits(logits of shape [8, 2, 16, 16], ratio=0.25, generator=torch.Generator().manual_seed(1), offdiag={offdiag})"
        out = fn(logits, 0.25, torch.Generator().manual_seed(1), offdiag=offdiag)
        expect(isinstance(out, torch.Tensor) and out.shape == logits.shape, f"{call} should return a tensor of shape [8, 2, 16, 16]")
        masked = torch.isinf(out) & (out < 0)
        expect(torch.equal(out[~masked], logits[~masked]), f"{call} changed entries it did not mask: unmasked logits must stay as they were")
        frac = masked.double().mean().item()
        want = 0.25 * (15 / 16 if offdiag else 1.0)
        expect(abs(frac - want) < 0.03, f"{call} masked {100 * frac:.1f}% of the entries; expected about {100 * want:.1f}%")
        expect(not masked.all(dim=-1).any(), f"{call} masked a whole row: its softmax would be NaN")
        if offdiag:
            expect(not masked.diagonal(dim1=-2, dim2=-1).any(), f"{call} masked a diagonal entry; with offdiag=True only off-diagonal ones may be masked")
    out = fn(logits, 1.0, torch.Generator().manual_seed(2))
    expect(torch.isfinite(torch.softmax(out, -1)).all(), "mask_logits(logits, ratio=1.0, ...) must keep the diagonal of fully masked rows (softmax gave NaN)")
    a = fn(logits, 0.5, torch.Generator().manual_seed(3))
    b = fn(logits, 0.5, torch.Generator().manual_seed(3))
    expect(torch.equal(torch.isinf(a), torch.isinf(b)), "two calls with generators seeded alike gave different masks: pass `generator` to torch.rand")
    c = fn(logits, 0.5, torch.Generator().manual_seed(4))
    both = (torch.isinf(a) & torch.isinf(c)).double().mean().item()  # independent random masks overlap in ratio^2 of entries
    expect(abs(both - 0.25) < 0.05, "mask_logits(logits, 0.5, ...) with generators seeded 3 and 4: the two masks share "
           f"{100 * both:.1f}% of the entries; independent random masks of half the entries share about 25%. "
           "The mask must be drawn at random (torch.rand with `generator`), not a fixed pattern")
