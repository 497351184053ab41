"""Checks for lesson 6b."""
import torch

from ..checking import expect


def _fonts(n_families=11, seed=0):
    """Image-level family names: families of 3 to 30 images, interleaved as a data set's rows are."""
    g = torch.Generator().manual_seed(seed)
    names = [f"Family {chr(65 + i)}" for i in range(n_families)]
    counts = torch.randint(3, 31, (n_families,), generator=g).tolist()
    fonts = [name for name, c in zip(names, counts) for _ in range(c)]
    return [fonts[i] for i in torch.randperm(len(fonts), generator=g).tolist()]


def check_font_split(fn):
    for n_families in (11, 2, 40):
        fonts = _fonts(n_families)
        call = f"font_split(fonts of {len(fonts)} images from {n_families} families, seed=0)"
        out = fn(fonts, 0)
        expect(isinstance(out, torch.Tensor) and out.dtype == torch.bool and out.shape == (len(fonts),),
               f"{call} should return a bool tensor of shape [{len(fonts)}], one entry per image")
        sides = {}
        for name, v in zip(fonts, out.tolist()):
            sides.setdefault(name, set()).add(v)
        split = sorted(name for name, s in sides.items() if len(s) > 1)
        expect(not split, f"{call} put images of {split[:3]} on both sides: every image of a family must be on one side "
               "(a family on both sides lets the validation score see the report fonts)")
        chosen = sum(1 for s in sides.values() if True in s)
        expect(chosen == n_families // 2, f"{call} made {chosen} validation families; expected half of {n_families}, "
               f"rounded down: {n_families // 2}")
        again = fn(fonts, 0)
        expect(isinstance(again, torch.Tensor) and torch.equal(again, out),
               f"{call} twice gave two different splits: the split must be a function of the seed")
    fonts = _fonts(11)
    picked = {name: 0 for name in set(fonts)}
    splits = set()
    for seed in range(20):
        out = fn(fonts, seed)
        splits.add(tuple(out.tolist()))
        for name in {f for f, v in zip(fonts, out.tolist()) if v}:
            picked[name] += 1
    expect(len(splits) >= 10, f"font_split(the same 11 families, seed=0..19) gave only {len(splits)} different splits: "
           "the families must be drawn at random from the seed")
    never = sorted(name for name, k in picked.items() if k == 0)
    always = sorted(name for name, k in picked.items() if k == 20)
    expect(not never and not always, f"over seeds 0..19, {never or always} were {'never' if never else 'always'} validation "
           "families: every family should have its chance on both sides (draw them at random, not in a fixed order)")
