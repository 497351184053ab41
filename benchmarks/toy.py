"""Benchmarks of the toy rung (2-D): prints numbers, asserts nothing.

    python benchmarks/toy.py            # everything (about 5 minutes on 2 cores)
    python benchmarks/toy.py --quick    # smaller sizes

1. Exact mixture score: points x components per second, the course's blocked matrix form against
   a naive loop over components (torch.distributions, one component at a time) on the same data.
2. The autoguidance toy figure end to end, the paper's recipe (lesson 5): train the main model
   (class A, width 64, 4096 steps of batch 4096 on the exact target), its guide (width 32, 512
   steps) and the CFG demo's guide (classes A + B, width 32, 512 steps); sample 4000 points each
   with autoguidance (w = 3) and CFG (w = 4), 32 Heun steps; score them against the exact class A.
   Against it, in the same run: a naive exact target computed the way the paper's code does (an
   einsum over every component for every point: inverse, log-density, responsibilities), timed on
   a few training steps and extrapolated to the figure's 5120 steps.
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
from course import evaluation, guiders, metrics, presets, samplers, toy_models, training  # noqa: E402
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


def naive_target(gm, x, sigma):
    """D*(x; sigma) the naive way: for every point and every component, invert C_k + sigma^2 I and
    evaluate the Gaussian (an [N, K, d, d] einsum), then the responsibilities. Exact, slow."""
    cov = gm.covs.unsqueeze(0) + sigma.reshape(-1, 1, 1, 1) ** 2 * torch.eye(gm.dim, dtype=torch.float64)  # [N, K, d, d]
    inv = torch.linalg.inv(cov)
    diff = x.unsqueeze(1) - gm.means.unsqueeze(0)  # [N, K, d]
    pull = -torch.einsum("nkij,nkj->nki", inv, diff)  # P_k (mu_k - x)
    logits = gm.weights.log() - 0.5 * torch.einsum("nki,nki->nk", diff, -pull) - 0.5 * torch.logdet(2 * torch.pi * cov)
    r = torch.softmax(logits, dim=1)
    return x + sigma.reshape(-1, 1) ** 2 * (r.unsqueeze(-1) * pull).sum(1)


def bench_toy_figure(n, naive_steps):
    """The paper-recipe toy end to end, then the naive target's cost per step in the same run."""
    recipe = dict(toy_models.TREE_RECIPE)
    times = {}
    t = time.perf_counter()
    models = {}
    for name in ("tree_main", "tree_guide", "tree_uncond"):
        data, make, settings = toy_models.SPECS[name]
        gm = toy_models.mixture(data)
        models[name], _ = training.train(make(), training.mixture_source(gm), mixture=gm, progress=False,
                                         steps=settings["steps"], **recipe)
        times[f"train {name} ({settings['steps']} steps)"] = time.perf_counter() - t
        t = time.perf_counter()
    target = presets.tree().condition(0)
    ref = target.sample(n, generator=torch.Generator().manual_seed(1000), dtype=torch.float64)
    threshold = metrics.hdr_threshold(target, 0.99)
    main, guide, uncond = models["tree_main"], models["tree_guide"], models["tree_uncond"]
    with torch.no_grad():
        x_ag = samplers.sample(guiders.Autoguidance(main, guide, 3.0), n, 2, y=0, sigma_max=5.0, seed=1)
        x_cfg = samplers.sample(guiders.Autoguidance(main, uncond, 4.0), n, 2, y=0, sigma_max=5.0, seed=1)
    times[f"sample 2 x {n} points (32 Heun steps)"] = time.perf_counter() - t
    t = time.perf_counter()
    scores = {name: evaluation.evaluate(target, x, ref, threshold) for name, x in (("autoguidance w=3", x_ag), ("CFG w=4", x_cfg))}
    times["score both"] = time.perf_counter() - t
    total = sum(times.values())
    print("toy figure, the paper's recipe: " + "; ".join(f"{k} {v:.1f} s" for k, v in times.items()) + f"; total {total:.1f} s")
    for name, sc in scores.items():
        print(f"  {name}: inside {sc['inside']:.3f}, precision {sc['precision']:.3f}, recall {sc['recall']:.3f}, max |x| {sc['max_abs']:.2f}")
    # the naive reference: same network and batch, the target computed per point and component
    gm = toy_models.mixture("tree A")
    g = torch.Generator().manual_seed(0)
    x0 = gm.sample(4096, generator=g, dtype=torch.float64)
    sigma = (torch.randn(4096, generator=g, dtype=torch.float64) * 1.5 - 2.3).exp()
    x = x0 + sigma[:, None] * torch.randn(4096, 2, generator=g, dtype=torch.float64)
    err = ((naive_target(gm, x, sigma) - gm.training_target(x.float(), sigma.float()).double()).norm(dim=1) / sigma).max().item()
    net = toy_models.SPECS["tree_main"][1]()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, betas=(0.9, 0.99))

    def naive_step():
        x0 = gm.sample(4096, generator=g, dtype=torch.float64)
        s = (torch.randn(4096, generator=g, dtype=torch.float64) * 1.5 - 2.3).exp()
        xn = x0 + s[:, None] * torch.randn(4096, 2, generator=g, dtype=torch.float64)
        target = naive_target(gm, xn, s).float()
        loss = (((net(xn.float(), s.float()) - target) ** 2).mean(1) / s.float() ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    t = time.perf_counter()
    for _ in range(naive_steps):
        naive_step()
    per_step = (time.perf_counter() - t) / naive_steps
    steps = sum(toy_models.SPECS[k][2]["steps"] for k in ("tree_main", "tree_guide", "tree_uncond"))
    ours = sum(v for k, v in times.items() if k.startswith("train"))
    print(f"naive target (einsum over all {gm.num_components} components per point, float64): {per_step:.2f} s per training step "
          f"({naive_steps} steps timed; the main model's step, the AB guide's costs about twice); the figure's {steps} steps "
          f"would take about {per_step * steps / 60:.0f} min (extrapolated) against {ours:.0f} s here, {per_step * steps / ours:.0f}x; "
          f"largest difference between the two targets: {err:.1e} sigma")


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
    bench_toy_figure(4_000, 2 if args.quick else 5)
    bench_batching(2_000 if args.quick else 16_000)
    print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
