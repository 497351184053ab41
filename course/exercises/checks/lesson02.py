"""Checks for lesson 2."""
import torch

from ...presets import two_moons
from ..checking import expect, expect_tensor, fmt


def check_classifier_guidance(fn):
    D = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    g = torch.tensor([[0.5, -0.5], [2.0, 1.0]])
    expect_tensor(fn(D, g, 2.0, 3.0), D + 3.0 * 4.0 * g, f"classifier_guidance(D_x={fmt(D)}, grad_log_p_y={fmt(g)}, sigma=2.0, w=3.0)")
    s = torch.tensor([1.0, 0.5])
    expect_tensor(fn(D, g, s, 1.0), D + s.reshape(-1, 1) ** 2 * g,
                  f"classifier_guidance(D_x={fmt(D)}, grad_log_p_y={fmt(g)}, sigma={fmt(s)} (one per row), w=1.0)")
    # with the exact mixture: w = 1 turns the unconditional denoiser into the conditional one
    gm = two_moons()
    x = torch.tensor([[0.2, 0.1], [-0.5, 0.4], [0.9, -0.3]], dtype=torch.float64)
    y = torch.tensor([0, 1, 1])
    got = fn(gm.denoise(x, 0.3), gm.grad_log_class_prob(x, 0.3, y), 0.3, 1.0)
    expect_tensor(got, gm.denoise(x, 0.3, y), "classifier_guidance with the exact two-moons mixture at sigma = 0.3, w = 1 "
                  "(should equal the exact conditional denoiser, by Bayes' rule)", atol=1e-8)


def check_noise_aware_loss(fn):
    gm = two_moons()
    n = 4096
    x0, k = gm.sample(n, generator=torch.Generator().manual_seed(0), return_components=True)
    x0, y = x0.float(), gm.labels[k]
    W, b = torch.tensor([[1.5, -1.0], [0.5, 2.0]]), torch.tensor([0.3, -0.3])
    calls = []

    def clf(x, sigma):
        """A stand-in classifier that records what it is asked: logits = x W + log(sigma) b."""
        if not isinstance(x, torch.Tensor) or tuple(x.shape) != (n, 2):
            raise ValueError(f"the classifier takes the noisy batch, shape [{n}, 2]; it was given "
                             f"{list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        sigma = torch.as_tensor(sigma, dtype=x.dtype)
        if sigma.numel() != n:
            raise ValueError(f"the classifier takes one sigma per row ({n} values, shape [{n}]); it was given "
                             f"{sigma.numel()} value(s)")
        calls.append((x.detach().clone(), sigma.reshape(-1).clone()))
        return x @ W + sigma.reshape(-1, 1).clamp(min=1e-12).log() * b

    call = f"noise_aware_loss(clf, x0 [{n}, 2] two-moons samples, y, generator seeded 1)"
    loss = fn(clf, x0, y, torch.Generator().manual_seed(1))
    expect(len(calls) == 1, f"{call} called the classifier {len(calls)} times; call it once, on the whole noisy batch")
    expect(isinstance(loss, torch.Tensor) and loss.numel() == 1 and bool(torch.isfinite(loss).all()),
           f"{call} should return one finite number (a scalar tensor); got {fmt(loss)}")
    x, sigma = calls[0]
    expect(bool((sigma > 0).all()), f"{call}: every sigma must be positive; the smallest was {sigma.min().item():.3g}")
    lo, hi = sigma.min().item(), sigma.max().item()
    expect(lo < 0.05 and hi > 2.0, f"{call}: the sigmas ranged over [{lo:.3g}, {hi:.3g}]; the sampler visits sigma from 80 "
           "down to 0.002, so the classifier must see noise levels below 0.05 and above 2 (ln sigma ~ N(-1.5, 1.8^2))")
    expect(sigma.unique().numel() > n // 2, f"{call}: only {sigma.unique().numel()} distinct sigmas among {n} rows; "
           "each row needs a noise level of its own")
    eps = (x - x0) / sigma.reshape(-1, 1)
    m, s = eps.mean(0), eps.std(0)
    expect(bool((m.abs() < 0.1).all() and ((s - 1).abs() < 0.1).all()),
           f"{call}: (x - x0) / sigma should be standard normal noise (mean 0, std 1 in each coordinate); it had mean "
           f"{fmt(m, 3)} and std {fmt(s, 3)}: is x = x0 + sigma * noise, with each row's own sigma?")
    expected = torch.nn.functional.cross_entropy(x @ W + sigma.reshape(-1, 1).log() * b, y)
    expect_tensor(loss.reshape(()).float(), expected, f"{call}: the mean cross-entropy of the classifier's logits against y",
                  atol=1e-4)
    calls.clear()
    again = fn(clf, x0, y, torch.Generator().manual_seed(1))
    other = fn(clf, x0, y, torch.Generator().manual_seed(2))
    expect(torch.equal(calls[0][1], sigma) and float(again) == float(loss),
           f"{call} twice gave different noise: draw every random number from the generator you are given")
    expect(not torch.equal(calls[1][1], sigma), "noise_aware_loss gave the same sigmas for generators seeded 1 and 2: "
           "draw the random numbers from the generator you are given")
