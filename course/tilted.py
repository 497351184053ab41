"""What guidance is said to sample, computed exactly on a grid (lesson 9).

The *tilted* target of a class with exponent gamma (the seminar's p(x|y) p(y|x)^(gamma-1)) is

    p_gamma(x0)  ∝  p(x0 | y)^gamma  p(x0)^(1 - gamma)          (gamma = 1: p(x0 | y) itself)

and CFG's score s_u + w (s_c - s_u) is its score *at sigma = 0* with gamma = w. For a mixture the
tilted density has no closed form, but on a fine 2-D grid it is only numbers: the log of the
product at every cell centre, normalised over the cells. :class:`TiltedGrid` represents it as one
small Gaussian per cell (mean = the cell centre, std ``s = h / 2`` for a cell width ``h``,
weight = the cell's mass), so the discretised target is the exact tilted density blurred by
N(0, s^2 I) - and everything about that mixture is exact:

* its noisy density on the grid at any sigma, by FFT convolution with a Gaussian (:meth:`noised`);
* its score and denoiser at any point and any sigma (:attr:`model`, a
  :class:`~course.mixtures.GaussianMixture`, so it is a denoiser like every other);
* exact samples (:meth:`sample`), and distances of any sample set to it (:meth:`tv`).

Shapes: points are [N, 2] float64; grids are [n, n] indexed [row = x2, column = x1].
"""
import math

import torch

from .mixtures import GaussianMixture


def tilted_log_density(cond, uncond, gamma):
    """log p(x | y)^gamma p(x)^(1 - gamma) (unnormalised) as a function of points [N, d] -> [N].
    ``cond`` and ``uncond`` are anything with ``log_prob(x)`` (e.g. ``gm.condition(y)`` and ``gm``)."""
    return lambda x: gamma * cond.log_prob(x) + (1.0 - gamma) * uncond.log_prob(x)


class ClassPair:
    """A conditional denoiser made of two models: D(x, sigma, y) is ``cond``'s denoiser for rows
    with a label and ``uncond``'s for rows labelled -1 (NULL, as CFG asks) or when y is None - for a condition that is not a class of one mixture
    (the 1-D Gaussian of lesson 9: x0 | c ~ N(c, 1), c ~ N(0, 1), conditioned on c = 0)."""

    def __init__(self, cond, uncond):
        self.cond, self.uncond = cond, uncond

    def __call__(self, x, sigma, y=None):
        if y is None:
            return self.uncond(x, sigma)
        null = torch.as_tensor(y).reshape(-1).expand(x.shape[0]) < 0  # the NULL label (-1) = no condition
        if not null.any():
            return self.cond(x, sigma)
        return torch.where(null.reshape(-1, *([1] * (x.ndim - 1))), self.uncond(x, sigma), self.cond(x, sigma))


def fft_gaussian_blur(mass, h, sigma):
    """Convolve a grid of masses [n, n] (cell width ``h``) with N(0, sigma^2 I): returns [n, n],
    the mass each cell centre would hold, sum_j mass_j N(g_i - g_j; sigma^2 I) h^2, computed by a
    zero-padded FFT (a linear, not circular, convolution: nothing wraps around the edges)."""
    n = mass.shape[0]
    if sigma == 0:
        return mass.clone()
    offsets = torch.arange(-(n - 1), n, dtype=torch.float64) * h  # every difference g_i - g_j on one axis
    k1 = torch.exp(-0.5 * (offsets / sigma) ** 2) * h / (math.sqrt(2 * math.pi) * sigma)  # 1-D kernel x cell width
    m = 2 * n - 1 + n - 1  # full linear-convolution length, so no wrap-around
    K = torch.fft.rfft(k1, n=m)
    # the Gaussian is separable: blur along x2 (rows), then along x1 (columns)
    out = mass
    for dim in (0, 1):
        f = torch.fft.rfft(out, n=m, dim=dim)
        f = f * (K.reshape(-1, 1) if dim == 0 else K.reshape(1, -1))
        full = torch.fft.irfft(f, n=m, dim=dim)
        out = full.narrow(dim, n - 1, n)  # the centred part: offsets -(n-1)..(n-1) shift by n-1
    return out


class TiltedGrid:
    """The tilted target p_gamma on an n x n grid over ``lim`` (see the module docstring).

    Args:
        cond, uncond: p(x | y) and p(x), each with ``log_prob(x [N, 2]) -> [N]``.
        gamma: the exponent (CFG's w). gamma > 1 sharpens toward the class.
        lim: ((x1_lo, x1_hi), (x2_lo, x2_hi)), the box; the target's mass outside it must be
            negligible (checked: the edge cells may hold at most ``edge_tol`` of the mass).
        n: cells per axis (cell width h = box width / n; the blur std is h / 2).
        keep: cells with less than ``keep`` x the largest cell's mass are left out of :attr:`model`
            (their total mass is reported in :attr:`dropped`).
    """

    def __init__(self, cond, uncond, gamma, lim=((-2.0, 2.0), (-2.0, 2.0)), n=256, keep=1e-12, edge_tol=1e-6):
        (a1, b1), (a2, b2) = lim
        if not (b1 - a1 > 0 and abs((b1 - a1) - (b2 - a2)) < 1e-12):
            raise ValueError(f"lim must be a square box ((lo, hi), (lo, hi)) with hi > lo; got {lim}")
        self.gamma, self.lim, self.n = float(gamma), lim, int(n)
        self.h = (b1 - a1) / n
        c1 = a1 + self.h * (torch.arange(n, dtype=torch.float64) + 0.5)  # cell centres
        c2 = a2 + self.h * (torch.arange(n, dtype=torch.float64) + 0.5)
        X1, X2 = torch.meshgrid(c1, c2, indexing="xy")  # [n, n], row = x2
        self.points = torch.stack([X1.reshape(-1), X2.reshape(-1)], 1)
        logq = tilted_log_density(cond, uncond, gamma)(self.points)
        if not torch.isfinite(logq).all():
            raise ValueError("the tilted log-density is not finite on the grid; is p(x | y)^gamma p(x)^(1-gamma) "
                             "normalisable for this gamma (gamma must leave the product integrable)?")
        self.mass = torch.softmax(logq, 0).reshape(n, n)  # cell masses, sum to 1
        edge = self.mass[0].sum() + self.mass[-1].sum() + self.mass[:, 0].sum() + self.mass[:, -1].sum()
        if edge > edge_tol:
            raise ValueError(f"the grid's edge cells hold {edge:.2e} of the tilted mass (> {edge_tol:g}): "
                             "the box cuts the target off; pass a larger lim")
        self.s = self.h / 2
        flat = self.mass.reshape(-1)
        on = flat > keep * flat.max()
        self.dropped = flat[~on].sum().item()
        self.model = GaussianMixture(flat[on], self.points[on], torch.full((int(on.sum()), 2), self.s**2))

    def noised(self, sigma):
        """The discretised target's mass per cell at noise level sigma: [n, n] (blur std sqrt(sigma^2 + s^2))."""
        return fft_gaussian_blur(self.mass, self.h, math.sqrt(float(sigma) ** 2 + self.s**2))

    def sample(self, n, generator=None):
        """n exact samples [n, 2] (float64) of the discretised target."""
        return self.model.sample(n, generator=generator, dtype=torch.float64)

    def bin_masses(self, bins):
        """The target's mass in a coarser ``bins`` x ``bins`` histogram of the same box: [bins, bins]."""
        if self.n % bins:
            raise ValueError(f"bins must divide the grid's n = {self.n}; got {bins}")
        k = self.n // bins
        return self.mass.reshape(bins, k, bins, k).sum((1, 3))

    def histogram(self, x, bins):
        """Fraction of samples x [N, 2] in each of ``bins`` x ``bins`` cells of the box: ([bins, bins],
        the fraction that fell outside the box)."""
        x = torch.as_tensor(x, dtype=torch.float64)
        (a1, b1), (a2, b2) = self.lim
        i1 = torch.floor((x[:, 0] - a1) / (b1 - a1) * bins).long()
        i2 = torch.floor((x[:, 1] - a2) / (b2 - a2) * bins).long()
        inside = (i1 >= 0) & (i1 < bins) & (i2 >= 0) & (i2 < bins)
        counts = torch.bincount(i2[inside] * bins + i1[inside], minlength=bins * bins).double()
        return counts.reshape(bins, bins) / len(x), 1.0 - inside.double().mean().item()

    def tv(self, x, bins=32):
        """Total-variation distance between the histogram of samples x [N, 2] and the target's bin
        masses: 0.5 sum |p_hat - p| (samples outside the box count in full). Exact samples do not
        score 0: N samples leave a floor of about 0.4 sqrt(bins^2 / N) - compare with
        ``tv(sample(N))``."""
        p_hat, outside = self.histogram(x, bins)
        return 0.5 * ((p_hat - self.bin_masses(bins)).abs().sum().item() + outside)


def gaussian_tilt(mean_c, cov_c, mean_u, cov_u, gamma):
    """The closed form for Gaussians: N(a, A)^gamma N(b, B)^(1-gamma) ∝ N(m, C) with
    C^-1 = gamma A^-1 + (1 - gamma) B^-1 and m = C (gamma A^-1 a + (1 - gamma) B^-1 b)."""
    Ai, Bi = torch.linalg.inv(cov_c), torch.linalg.inv(cov_u)
    prec = gamma * Ai + (1 - gamma) * Bi
    if (torch.linalg.eigvalsh(prec) <= 0).any():
        raise ValueError(f"gamma = {gamma} makes the tilted 'covariance' non-positive: the product is not normalisable")
    C = torch.linalg.inv(prec)
    return C @ (gamma * Ai @ mean_c + (1 - gamma) * Bi @ mean_u), C


def cfg_variance_1d(gamma, var_c=1.0, var_u=2.0, sde=False, steps=20_000, sigma_max=200.0, sigma_min=1e-4):
    """The variance that CFG's sampler reaches in the 1-D Gaussian case, computed exactly for the
    discretised sampler (Bradley & Nakkiran 2025): p(x | c) = N(0, var_c), p(x) = N(0, var_u), so
    CFG's score at sigma is -a(sigma) x with a = gamma / (var_c + sigma^2) + (1 - gamma) / (var_u + sigma^2),
    every step is linear in x and the variance follows a recursion:

    * ODE (Euler in sigma):       V <- (1 + (sigma_{i+1} - sigma_i) sigma_i a_i)^2 V            -> var_c^gamma var_u^(1-gamma)
    * SDE (:func:`~course.samplers.edm_sde`): V <- (1 - d_i a_i)^2 V + d_i, d_i = sigma_i^2 - sigma_{i+1}^2

    on an EDM schedule of ``steps`` levels; starts from V = var_c + sigma_max^2."""
    from .samplers import edm_sigmas

    s = edm_sigmas(steps, sigma_min, sigma_max).to(torch.float64)
    a = gamma / (var_c + s[:-1] ** 2) + (1 - gamma) / (var_u + s[:-1] ** 2)
    if sde:
        d = s[:-1] ** 2 - s[1:] ** 2
        V = var_c + sigma_max**2
        for ai, di in zip(a.tolist(), d.tolist()):
            V = (1 - di * ai) ** 2 * V + di
        return V
    factors = (1 + (s[1:] - s[:-1]) * s[:-1] * a) ** 2
    return (var_c + sigma_max**2) * factors.prod().item()
