"""Scoring samples (FID: Heusel et al. 2017, https://arxiv.org/abs/1706.08500; precision and recall:
Kynkaanniemi et al. 2019, https://arxiv.org/abs/1904.06991).

Against an exact target (a Gaussian mixture):
* :func:`mean_log_prob` - quality: the exact log-density of the samples, averaged;
* :func:`inside_fraction` - quality: the fraction of samples inside the target's region that
  holds ``mass`` (default 99%) of its probability (its highest-density region);
* :func:`occupancy_kl` - variety: KL(target weights || how often samples land on each component);

Between two sample sets (any dimension):
* :func:`sliced_wasserstein` - the average 1-D Wasserstein-1 distance over random directions;
* :func:`mmd` - the (unbiased) squared maximum mean discrepancy with a Gaussian kernel;
* :func:`precision_recall` - k-NN precision and recall (Kynkaanniemi et al. 2019, k = 3);
* :func:`frechet_distance` - the Frechet distance of Gaussians fitted to two feature sets (FID's formula).
"""
import torch


def mean_log_prob(gm, x, sigma=0.0) -> float:
    """Average exact log p(x) of samples x [N, d] under the mixture ``gm``."""
    return gm.log_prob(x, sigma).mean().item()


def hdr_threshold(gm, mass=0.99, n=100_000, seed=0) -> float:
    """The log-density level above which the target holds ``mass`` of its probability,
    estimated from n exact samples (the (1 - mass)-quantile of their log-density)."""
    ref = gm.sample(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return torch.quantile(gm.log_prob(ref), 1 - mass).item()


def inside_fraction(gm, x, mass=0.99, threshold=None) -> float:
    """Fraction of samples x inside the target's ``mass`` highest-density region (exact samples: ~mass)."""
    t = hdr_threshold(gm, mass) if threshold is None else threshold
    return (gm.log_prob(x) >= t).double().mean().item()


def occupancy(gm, x) -> torch.Tensor:
    """How often the samples' most responsible component is each component: [K], sums to 1."""
    k = gm.component_log_probs_argmax(x)
    return torch.bincount(k, minlength=gm.num_components).double() / len(k)


def occupancy_kl(gm, x, eps=1e-3) -> float:
    """KL(w || occupancy) over the components (with ``eps`` added to empty cells): 0 when every
    component holds its share of samples; large when modes are missed (lost variety)."""
    q = occupancy(gm, x) + eps
    q = q / q.sum()
    p = gm.weights
    return (p * (p / q).log()).sum().item()


def sliced_wasserstein(a, b, n_proj=256, seed=0) -> float:
    """Sliced Wasserstein-1 distance between sample sets a [N, d] and b [M, d]: the mean over
    random unit directions of the 1-D W1 distance of the projections (quantiles for N != M)."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need two sample sets [N, d] and [M, d]; got {list(a.shape)} and {list(b.shape)}")
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(a.shape[1], n_proj, generator=g, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=0)
    pa, pb = (a @ dirs).sort(dim=0).values, (b @ dirs).sort(dim=0).values
    if len(pa) != len(pb):
        q = torch.linspace(0, 1, max(len(pa), len(pb)), dtype=torch.float64)
        pa, pb = torch.quantile(pa, q, dim=0), torch.quantile(pb, q, dim=0)
    return (pa - pb).abs().mean().item()


def mmd(a, b, bandwidth=None) -> float:
    """Unbiased MMD^2 with the Gaussian kernel exp(-|x - y|^2 / (2 h^2)); h defaults to the
    median pairwise distance of the pooled samples. About 0 for samples of one distribution."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if bandwidth is None:
        pool = torch.cat([a[:1000], b[:1000]])
        bandwidth = torch.cdist(pool, pool).median().item()
    def k(u, v):
        return torch.exp(-torch.cdist(u, v) ** 2 / (2 * bandwidth**2))
    n, m = len(a), len(b)
    kaa, kbb = k(a, a), k(b, b)
    return ((kaa.sum() - kaa.diag().sum()) / (n * (n - 1)) + (kbb.sum() - kbb.diag().sum()) / (m * (m - 1))
            - 2 * k(a, b).mean()).item()


def knn_radius(x, k=3):
    """[N] distance from each point of x [N, d] to its k-th nearest neighbour in x (itself excluded)."""
    return _knn_radius(torch.as_tensor(x, dtype=torch.float64), k)


def _knn_radius(x, k):
    """Distance from each point to its k-th nearest neighbour in the same set (itself excluded).
    Rows in blocks of 2048: the [N, N] distance matrix of 11,180 test glyphs would be 1 GB."""
    return torch.cat([torch.cdist(x[i:i + 2048], x).kthvalue(k + 1, dim=1).values for i in range(0, len(x), 2048)])


def precision_recall(real, fake, k=3, real_radius=None):
    """k-NN precision and recall (Kynkaanniemi et al. 2019).

    precision: the fraction of fake samples inside the union of the real samples' k-NN balls
    (quality); recall: the fraction of real samples inside the fake samples' k-NN balls (variety).
    ``real_radius``: the real set's k-NN radii if already computed (:func:`knn_radius`; the
    [R, R] distance matrix of a large real set is the expensive part). Returns (precision, recall)."""
    real, fake = torch.as_tensor(real, dtype=torch.float64), torch.as_tensor(fake, dtype=torch.float64)
    r_real = _knn_radius(real, k) if real_radius is None else real_radius
    r_fake = _knn_radius(fake, k)
    d = torch.cdist(fake, real)  # [F, R]
    precision = (d <= r_real.unsqueeze(0)).any(dim=1).double().mean().item()
    recall = (d.T <= r_fake.unsqueeze(0)).any(dim=1).double().mean().item()
    return precision, recall


def feature_statistics(features):
    """Mean [D] and covariance [D, D] (float64) of features [N, D]."""
    f = torch.as_tensor(features, dtype=torch.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"features must be [N, D] with N >= 2; got {list(f.shape)}")
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) (FID's formula).

    Tr (S1 S2)^(1/2) is the sum of the square roots of the eigenvalues of S1^(1/2) S2 S1^(1/2),
    a symmetric PSD matrix, which avoids the complex round-off of a general matrix square root."""
    mu1, mu2 = torch.as_tensor(mu1, dtype=torch.float64), torch.as_tensor(mu2, dtype=torch.float64)
    cov1, cov2 = torch.as_tensor(cov1, dtype=torch.float64), torch.as_tensor(cov2, dtype=torch.float64)
    evals, evecs = torch.linalg.eigh(cov1)
    root1 = evecs @ torch.diag(evals.clamp(min=0).sqrt()) @ evecs.T
    middle = torch.linalg.eigvalsh(root1 @ cov2 @ root1).clamp(min=0)
    return ((mu1 - mu2).square().sum() + cov1.trace() + cov2.trace() - 2 * middle.sqrt().sum()).item()
