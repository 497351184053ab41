"""Judging guided samples on the toy, against the exact target p(x | y).

:func:`evaluate` scores one sample set; :func:`sweep` samples a guider at several w and scores
each. Every number comes from the exact mixture or from exact samples of it:

* quality   - ``median_log_p``: median exact log p(x | y) of the samples (``log_p``, the mean, is
  also computed, but one sample far out can dominate it); ``inside``: fraction inside the
  target's 99%-mass region (exact samples score 0.99); ``precision``: k-NN precision (k = 3).
* variety   - ``recall``: k-NN recall against exact samples; ``occupancy_kl``: KL between the
  target's component weights and where the samples land (0 = every branch in proportion).
* distance  - ``sliced_w1``: sliced Wasserstein-1 to exact samples (lower is better).
"""
import torch
from tqdm import tqdm

from . import metrics, samplers
from .settings import pick

COLUMNS = ("median_log_p", "inside", "precision", "recall", "occupancy_kl", "sliced_w1")


def evaluate(target, x, ref, threshold=None) -> dict:
    """Score samples x [N, d] of the target mixture, with exact reference samples ref [M, d]."""
    x = x.detach().to(torch.float64)
    keep = torch.isfinite(x).all(dim=1)
    x = x[keep]
    precision, recall = metrics.precision_recall(ref, x, k=3)
    log_p = target.log_prob(x)
    return dict(
        log_p=log_p.mean().item(),
        median_log_p=log_p.median().item(),
        max_abs=x.abs().max().item(),
        inside=metrics.inside_fraction(target, x, threshold=threshold),
        precision=precision,
        recall=recall,
        occupancy_kl=metrics.occupancy_kl(target, x),
        sliced_w1=metrics.sliced_wasserstein(x, ref),
        finite=keep.double().mean().item(),
    )


def sweep(make_denoiser, ws, target, y, n=4000, seed=0, steps=None, sigma_max=80.0, ref=None, threshold=None, progress=True):
    """For each w: sample n points of class y with EDM Heun from ``make_denoiser(w)`` and score
    them against ``target`` (the exact p(x | y)). Returns a list of dicts (w, samples, scores...).
    ``steps`` defaults to 32 (10 in fast mode); ``progress`` shows a bar over the ws. The sampler
    starts at ``sigma_max`` = 80 (EDM's): a start at 5 leaves a visible bias even at w = 1 on the
    toys (lesson 2, Figure 2.2)."""
    steps = pick(32, 10) if steps is None else steps
    if ref is None:
        ref = target.sample(n, generator=torch.Generator().manual_seed(seed + 1000), dtype=torch.float64)
    if threshold is None:
        threshold = metrics.hdr_threshold(target, 0.99)
    rows = []
    for w in tqdm(ws, disable=not progress, desc="sweep over w", leave=False):
        x = samplers.sample(make_denoiser(w), n, target.dim, y=y, steps=steps, sigma_max=sigma_max, seed=seed)
        rows.append(dict(w=w, samples=x, **evaluate(target, x, ref, threshold)))
    return rows


def exact_row(target, n=4000, seed=0, ref=None, threshold=None) -> dict:
    """The scores of exact samples: the best any sampler can do with n samples (the noise floor)."""
    if ref is None:
        ref = target.sample(n, generator=torch.Generator().manual_seed(seed + 1000), dtype=torch.float64)
    x = target.sample(n, generator=torch.Generator().manual_seed(seed + 2000), dtype=torch.float64)
    return dict(w=float("nan"), samples=x, **evaluate(target, x, ref, threshold))


def best_at_variety(rows, min_recall=0.9, quality="inside"):
    """The row with the highest ``quality`` among those whose recall is at least ``min_recall``
    (the quality a guider reaches within a variety budget); None if no row qualifies."""
    ok = [r for r in rows if r["recall"] >= min_recall]
    return max(ok, key=lambda r: r[quality]) if ok else None


HEADERS = {"median_log_p": "med. log p", "log_p": "mean log p", "occupancy_kl": "occup. KL", "sliced_w1": "sliced W1",
           "max_abs": "max |x|"}  # short column titles: a table fits a book page (about 90 characters)


def table(rows, label="w", columns=COLUMNS) -> str:
    """A text table of sweep rows: one line per row (its ``name``, or its w), one column per score."""
    names = [str(r.get("name", f"{r['w']:g}")) for r in rows]
    width = max([len(label), 6] + [len(n) for n in names])
    head = f"{label:>{width}} " + " ".join(f"{HEADERS.get(c, c):>10}" for c in columns)
    lines = [head, "-" * len(head)]
    for name, r in zip(names, rows):
        lines.append(f"{name:>{width}} " + " ".join(f"{r[c]:10.3f}" if abs(r[c]) < 1e5 else f"{r[c]:10.3g}" for c in columns))
    return "\n".join(lines)
