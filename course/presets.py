"""Ready-made mixtures for the lessons.

* :func:`ring` - K isotropic Gaussians on a circle (the classic 8-Gaussian ring), one class each
  or two alternating classes.
* :func:`tree` - the two-class fractal "tree" of the autoguidance paper, from its published
  recipe (Karras et al. 2024; the recursion and constants are spelled out in its docstring):
  each class a binary tree of 127 branches, each branch a row of 8 elongated Gaussians, thinner
  and lighter at every split; class A grows toward the upper right, B toward the lower left.
* :func:`fit` - fit a mixture to any point cloud with scikit-learn (one fit per class).
* :func:`overlap`, :func:`boxes`, :func:`two_modes_1d` - lesson 9's small worlds: two overlapping
  classes, two adjacent uniform boxes (Chidambaram et al. 2024), and a 1-D class with two modes
  beside another class (Kynkaanniemi et al. 2024's interval toy).
"""
import math

import numpy as np
import torch

from .mixtures import GaussianMixture


def ring(k: int = 8, radius: float = 1.0, std: float = 0.1, classes: int = None) -> GaussianMixture:
    """k Gaussians of std ``std`` evenly spaced on a circle. ``classes``: None gives component i
    the label i; 2 alternates labels 0 and 1 around the ring."""
    angles = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
    means = radius * torch.stack([angles.cos(), angles.sin()], dim=1)
    covs = torch.full((k, 2), std**2, dtype=torch.float64)
    labels = torch.arange(k) if classes is None else torch.arange(k) % classes
    return GaussianMixture(torch.ones(k), means, covs, labels)


PAPER_TREE_ORIGIN = (0.0030, 0.0325)
PAPER_TREE_SCALE = (1.3136, 1.3844)


def tree(classes=("A", "B"), depth: int = 7, seed: int = 2) -> GaussianMixture:
    """The two-class fractal tree of the autoguidance paper (Karras et al. 2024, Figures 1-2),
    built from its published recipe: 2 classes x 127 branches x 8 anisotropic Gaussians, data std
    about 0.5 per axis.

    One ``numpy.random.RandomState(seed)`` drives both classes: class A (label 0) grows first from
    angle pi/4, then class B (label 1) from 5 pi/4, both from the origin (0.0030, 0.0325). A branch
    at depth d (0..depth-1; the paper's 7 levels give 127 branches per class) starting at ``pos``
    with angle ``a``:

        dist  = 0.292 * 0.8^d * (0.2 randn + 1)              (the branch's first draw)
        thick = 0.2 * 0.8^d / dist,   size = scale * dist * 0.06,   u = (cos a, sin a)
        8 components, t in linspace(0.07, 0.93, 8): weight dist * 0.5^d,
            mean (pos + u dist t) * scale,   cov (u u^T + (I - u u^T) thick^2) * outer(size, size)
        children at pos + u dist, sign +1 then -1, angle a + sign 0.7^d (0.2 randn + 1)
            (each child's draw made just before recursing into it - at the deepest level too,
            where the recursion then returns at once: those draws shift every later branch)

    with scale = (1.3136, 1.3844) elementwise. ``classes`` selects "A", "B" or both; weights are
    normalised over the selected classes, labels stay 0 (A) and 1 (B). A smaller ``depth`` gives
    the same recursion cut short (a small tree for tests)."""
    rnd = np.random.RandomState(seed)
    levels = depth
    scale = np.array(PAPER_TREE_SCALE)
    comps = {"A": [], "B": []}

    def branch(out, pos, angle, depth):
        if depth >= levels:  # checked on entry, as the official recursion does: the deepest
            return           # branches still draw both children's angles, which the stream must consume
        u = np.array([math.cos(angle), math.sin(angle)])
        dist = 0.292 * 0.8**depth * (0.2 * rnd.randn() + 1)
        thick = 0.2 * 0.8**depth / dist
        size = scale * dist * 0.06
        cov = (np.outer(u, u) + (np.eye(2) - np.outer(u, u)) * thick**2) * np.outer(size, size)
        for t in np.linspace(0.07, 0.93, 8):
            out.append((dist * 0.5**depth, (pos + u * dist * t) * scale, cov))
        for sign in (1, -1):
            child = angle + sign * 0.7**depth * (0.2 * rnd.randn() + 1)
            branch(out, pos + u * dist, child, depth + 1)

    origin = np.array(PAPER_TREE_ORIGIN)
    branch(comps["A"], origin, math.pi / 4, 0)  # A first: the shared random stream makes order matter
    branch(comps["B"], origin, 5 * math.pi / 4, 0)
    unknown = set(classes) - {"A", "B"}
    if unknown or not classes:
        raise ValueError(f"classes must be a selection of 'A' and 'B'; got {classes!r}")
    rows = [(w, m, c, label) for label, name in enumerate(("A", "B")) if name in classes for w, m, c in comps[name]]
    weights, means, covs, labels = zip(*rows)
    return GaussianMixture(np.array(weights), np.array(means), np.array(covs), list(labels))


def standardise(gm: GaussianMixture, std: float = 0.5) -> GaussianMixture:
    """Shift a mixture to mean 0 and scale it so that its overall std (averaged over dims) is ``std``."""
    w = gm.weights.unsqueeze(1)
    mean = (w * gm.means).sum(0)
    second = (gm.weights[:, None, None] * (gm.covs + (gm.means - mean)[:, :, None] * (gm.means - mean)[:, None, :])).sum(0)
    scale = std / math.sqrt(torch.diagonal(second).mean().item())
    return GaussianMixture(gm.weights, (gm.means - mean) * scale, gm.covs * scale**2, gm.labels)


def fit(points, n_components: int = 8, labels=None, seed: int = 0) -> GaussianMixture:
    """Fit a full-covariance mixture to points [N, d] with scikit-learn's GaussianMixture.

    With ``labels`` [N], one mixture of ``n_components`` is fitted per class and the class
    mixtures are combined with weights proportional to the class frequencies, so the result
    knows p(y | x) as well as p(x).
    """
    from sklearn.mixture import GaussianMixture as SkGMM

    points = np.asarray(points, dtype=np.float64)
    unlabelled = labels is None
    labels = np.zeros(len(points), dtype=int) if unlabelled else np.asarray(labels)
    if points.ndim != 2 or labels.shape != (len(points),):
        raise ValueError(f"points must be [N, d] and labels [N]; got {points.shape} and {labels.shape}")
    weights, means, covs, comp_labels = [], [], [], []
    for c in np.unique(labels):
        sk = SkGMM(n_components, covariance_type="full", random_state=seed).fit(points[labels == c])
        weights.append(sk.weights_ * np.mean(labels == c))
        means.append(sk.means_)
        covs.append(sk.covariances_)
        comp_labels.append(np.full(n_components, c))
    comp_labels = None if unlabelled else np.concatenate(comp_labels)
    return GaussianMixture(np.concatenate(weights), np.concatenate(means), np.concatenate(covs), comp_labels)


def two_moons(n_components: int = 8, n_points: int = 4000, noise: float = 0.08, seed: int = 0) -> GaussianMixture:
    """scikit-learn's two moons (class = moon), fitted by :func:`fit` and scaled to std 0.5."""
    from sklearn.datasets import make_moons

    x, y = make_moons(n_points, noise=noise, random_state=seed)
    return standardise(fit(x, n_components, y, seed), 0.5)


def overlap() -> GaussianMixture:
    """Two classes that overlap (lesson 9): class 0 is two round blobs, at (-0.4, 0) and
    (0.5, 0.5); class 1 one elongated blob at (0.3, 0) lying across both. Tilting class 0 away
    from class 1 moves and reweights its blobs, so the tilted target differs visibly from p(x | 0)."""
    return GaussianMixture([0.25, 0.25, 0.5], [[-0.4, 0.0], [0.5, 0.5], [0.3, 0.0]],
                           [[0.3**2, 0.3**2], [0.2**2, 0.2**2], [0.35**2, 0.25**2]], [0, 0, 1])


def boxes(m: int = 16) -> GaussianMixture:
    """Two adjacent uniform boxes (Chidambaram et al. 2024): class 0 fills [-1, 0] x [-0.5, 0.5],
    class 1 fills [0, 1] x [-0.5, 0.5]. Each box is smoothed into an m x m lattice of round
    Gaussians (std half the spacing, so the density inside is flat to about 1% and the edges are
    blurred over about 1/m), which lets the exact mixture machinery apply."""
    h = 1.0 / m
    c = (torch.arange(m, dtype=torch.float64) + 0.5) * h
    X1, X2 = torch.meshgrid(c, c - 0.5, indexing="xy")
    right = torch.stack([X1.reshape(-1), X2.reshape(-1)], 1)
    means = torch.cat([right - torch.tensor([1.0, 0.0], dtype=torch.float64), right])
    labels = torch.cat([torch.zeros(m * m), torch.ones(m * m)]).long()
    return GaussianMixture(torch.ones(2 * m * m), means, torch.full((2 * m * m, 2), (0.5 * h) ** 2), labels)


def two_modes_1d(std: float = 0.1) -> GaussianMixture:
    """A 1-D world (Kynkaanniemi et al. 2024's interval toy): class 0 has two equal modes at -1 and
    +1; class 1 (half the data) sits at -2, beside class 0's left mode."""
    return GaussianMixture([0.25, 0.25, 0.5], [[-1.0], [1.0], [-2.0]], [[[std**2]]] * 3, [0, 0, 1])
