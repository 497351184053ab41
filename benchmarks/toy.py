"""Benchmarks of the toy rung (2-D): prints numbers, asserts nothing.

    python benchmarks/toy.py            # everything (a few minutes on 2 cores)
    python benchmarks/toy.py --quick    # smaller sizes

1. Exact mixture score: points x components per second, the course's blocked matrix form against
   a naive loop over components (torch.distributions, one component at a time) on the same data.
2. The autoguidance toy figure end to end: train the main model (width 64, 4096 steps) and the
   guide (width 32, 512 steps) on the tree, then sample 16k points with autoguidance (32 Heun steps).
3. Guided sampling with the branches batched into one call against separate calls (CFG, PAG).
4. Peak resident memory of the process.
"""
import argparse
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from course import guiders, mlp, presets, samplers, toy_models, training  # noqa: E402
from course.mixtures import GaussianMixture  # noqa: E402


def timed(fn, repeat=1):
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def naive_score(gm, x, sigma):
    """One component at a time: log-densities by torch.distributions, then responsibilities."""
    eye = torch.eye(gm.dim, dtype=torch.float64)
    logs, pulls = [], []
    for k in range(gm.num_components):
        cov = gm.covs[k] + sigma**2 * eye
        logs.append(torch.distributions.MultivariateNormal(gm.means[k], cov).log_prob(x) + gm.weights[k].log())
        pulls.append(torch.linalg.solve(cov, (gm.means[k] - x).T).T)
    r = torch.softmax(torch.stack(logs, 1), dim=1)
    return (r.unsqueeze(-1) * torch.stack(pulls, 1)).sum(1)


def bench_score(n_points, n_comp, n_naive):
    g = torch.Generator().manual_seed(0)
    A = torch.randn(n_comp, 2, 2, generator=g, dtype=torch.float64) * 0.1
    gm = GaussianMixture(torch.rand(n_comp, generator=g) + 0.1, torch.randn(n_comp, 2, generator=g), A @ A.transpose(1, 2) + 1e-3 * torch.eye(2))
    x = torch.randn(n_points, 2, generator=g)
    t = timed(lambda: gm.score(x, 0.5), repeat=3)
    xs = x[:n_naive].double()
    t_naive = timed(lambda: naive_score(gm, xs, 0.5))
    err = (naive_score(gm, xs, 0.5) - gm.score(xs, 0.5)).abs().max().item()
    print(f"exact score, {n_points:.0e} points x {n_comp} components: {t:.3f} s = {n_points * n_comp / t:.2e} point-components/s")
    print(f"naive per-component loop, {n_naive:.0e} points x {n_comp} components: {t_naive:.3f} s = {n_naive * n_comp / t_naive:.2e} point-components/s"
          f"  (blocked form is {n_naive * n_comp / t_naive and (n_points * n_comp / t) / (n_naive * n_comp / t_naive):.1f}x faster; max |difference| {err:.1e})")


def bench_toy_figure(n):
    tree = presets.tree()
    t0 = time.perf_counter()
    main, _ = training.train(mlp.MLPDenoiser(num_classes=2, width=64), training.mixture_source(tree), steps=4096, batch=2048,
                             loss_kwargs=toy_models.TREE_LOSS, progress=False)
    t1 = time.perf_counter()
    guide, _ = training.train(mlp.MLPDenoiser(num_classes=2, width=32), training.mixture_source(tree), steps=512, batch=2048,
                              loss_kwargs=toy_models.TREE_LOSS, progress=False)
    t2 = time.perf_counter()
    samplers.sample(guiders.Autoguidance(main, guide, 3.0), n, 2, y=0, sigma_max=5.0)
    t3 = time.perf_counter()
    print(f"toy figure: train main (w64, 4096 steps, batch 2048) {t1 - t0:.1f} s; guide (w32, 512 steps) {t2 - t1:.1f} s; "
          f"sample {n} points with autoguidance (32 Heun steps, 126 network calls) {t3 - t2:.1f} s; total {t3 - t0:.1f} s")


def bench_batching(n):
    tree_cfg = toy_models.load("tree_cfg")
    tree_attn = toy_models.load("tree_attn")
    layers = ["net.blocks.0.attn", "net.blocks.1.attn"]
    for name, make in [("CFG (tree_cfg, MLP)", lambda b: guiders.CFG(tree_cfg, 3.0, batched=b)),
                       ("PAG (tree_attn, transformer)", lambda b: guiders.PAG(tree_attn, layers, 3.0, batched=b))]:
        with torch.no_grad():
            t_b = timed(lambda: samplers.sample(make(True), n, 2, y=0, sigma_max=5.0))
            t_s = timed(lambda: samplers.sample(make(False), n, 2, y=0, sigma_max=5.0))
        print(f"guided sampling, {name}, {n} points, 32 Heun steps: batched {t_b:.2f} s, separate calls {t_s:.2f} s (ratio {t_s / t_b:.2f})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bench_score(100_000 if args.quick else 1_000_000, 1000, 2_000 if args.quick else 20_000)
    bench_toy_figure(4_000 if args.quick else 16_000)
    bench_batching(2_000 if args.quick else 16_000)
    print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
