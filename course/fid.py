"""Fréchet distances of generated images against reference statistics (Heusel et al. 2017,
https://arxiv.org/abs/1706.08500).

FID compares Gaussians fitted to Inception-v3 pool features (2048-d) of 50,000 generated images
with those of the real data: ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))
(:func:`course.metrics.frechet_distance`). Nothing is downloaded here: the feature network and the
reference statistics come from paths the user supplies.

* Feature network: a module mapping uint8 images [N, 3, H, W] to features [N, D], saved with
  ``torch.export.save`` (a ``.pt2`` file: a serialized graph of tensor operations, which cannot
  import or run arbitrary Python) or, the older way, as TorchScript (``torch.jit.save``, deprecated
  by PyTorch).
* Reference statistics: an ``.npz`` with arrays ``mu`` [D] and ``sigma`` [D, D] (the usual format
  of FID reference files), read with ``allow_pickle=False``.
"""
from pathlib import Path

import numpy as np
import torch

from . import metrics


def load_feature_network(path, device="cpu"):
    """The feature network at ``path``: a torch.export program (.pt2) or a TorchScript file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"feature network {path} not found: pass the path of an exported (.pt2) or TorchScript feature network")
    try:
        if path.suffix == ".pt2":
            return torch.export.load(str(path)).module().to(device)
        return torch.jit.load(str(path), map_location=device).eval()
    except Exception as err:  # whatever the loaders raise on a damaged or foreign file
        raise ValueError(f"{path} is neither a torch.export program (.pt2) nor a TorchScript module ({err}); "
                         "save the network with torch.export.save") from None


def load_reference(path):
    """(mu [D], sigma [D, D]) float64 tensors from an .npz with arrays 'mu' and 'sigma'."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"reference statistics {path} not found: pass an .npz with arrays 'mu' and 'sigma'")
    with np.load(path, allow_pickle=False) as f:
        missing = {"mu", "sigma"} - set(f.files)
        if missing:
            raise ValueError(f"{path} lacks {sorted(missing)}; it has {sorted(f.files)}")
        mu, sigma = torch.from_numpy(f["mu"]).double(), torch.from_numpy(f["sigma"]).double()
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"{path}: mu must be [D] and sigma [D, D]; got {list(mu.shape)} and {list(sigma.shape)}")
    return mu, sigma


def save_reference(path, features):
    """Write the statistics of features [N, D] as an .npz reference file (mu, sigma)."""
    mu, sigma = metrics.feature_statistics(features)
    np.savez(path, mu=mu.numpy(), sigma=sigma.numpy())


@torch.no_grad()
def features_of(images_uint8, network, batch=100):
    """Features [N, D] of uint8 images [N, 3, H, W], computed in batches."""
    out = [network(images_uint8[i : i + batch]).double().cpu() for i in range(0, len(images_uint8), batch)]
    return torch.cat(out).reshape(len(images_uint8), -1)


def feature_sums(features, shift=None):
    """(n, sum of (f - shift) [D], sum of (f - shift)(f - shift)^T [D, D]) in float64 for
    features f [N, D]: statistics that add up across batches and processes (torch.distributed
    all_reduce). A shift near the mean (e.g. the reference statistics' mu, which every process
    has) keeps the covariance's cancellation small: s2 - s1 s1^T / n then subtracts two small
    numbers instead of two large ones."""
    f = torch.as_tensor(features, dtype=torch.float64)
    if f.ndim != 2:
        raise ValueError(f"features must be [N, D]; got {list(f.shape)}")
    if shift is not None:
        f = f - torch.as_tensor(shift, dtype=torch.float64)
    return len(f), f.sum(0), f.T @ f


def statistics_from_sums(n, s1, s2, shift=None):
    """Mean [D] and (unbiased) covariance [D, D] from :func:`feature_sums` (with the same shift):
    mu = shift + s1 / n, cov = (s2 - s1 s1^T / n) / (n - 1)."""
    if n < 2:
        raise ValueError(f"need at least 2 feature vectors for a covariance; got {n}")
    mean = s1 / n
    cov = (s2 - n * torch.outer(mean, mean)) / (n - 1)
    return (mean if shift is None else mean + torch.as_tensor(shift, dtype=torch.float64)), cov


def frechet_from_sums(n, s1, s2, reference, shift=None):
    """The Fréchet distance between the features summed in (n, s1, s2) and reference (mu, sigma)."""
    mu, sigma = statistics_from_sums(n, s1, s2, shift)
    if mu.shape != reference[0].shape:
        raise ValueError(f"features are {mu.shape[0]}-d but the reference statistics are {reference[0].shape[0]}-d: "
                         "were they made with another feature network?")
    return metrics.frechet_distance(mu, sigma, *reference)


def frechet_to_reference(features, reference):
    """The Fréchet distance between features [N, D] and reference (mu, sigma)."""
    mu, sigma = metrics.feature_statistics(features)
    if mu.shape != reference[0].shape:
        raise ValueError(f"features are {mu.shape[0]}-d but the reference statistics are {reference[0].shape[0]}-d: "
                         "were they made with another feature network?")
    return metrics.frechet_distance(mu, sigma, *reference)
