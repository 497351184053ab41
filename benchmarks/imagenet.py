"""Forward-pass time and memory of our ImageNet-64 networks, and guided-sampling throughput with
the branches batched into one call against separate calls (prints numbers only).

    python benchmarks/imagenet.py [--device cuda] [--sizes shared,xs,s] [--sampling-only] [--loading-only]

"shared" is the conformance configuration (EDM2 model_channels 32, ADM 32) at batch 4; "xs" and
"s" are EDM2's img64 XS (128 channels) and S (192) and the released ADM 64x64 UNet (192), at
batch 1 on a CPU (batch 16 on a GPU). Weights are random: speed does not depend on them.
The baseline column runs the same network with PyTorch's fused scaled_dot_product_attention in
place of our explicit (perturbable) attention maps, to show what the PAG hooks cost.

Loading: an EDM2 XS- and S-size checkpoint (random fp16 weights) is written in the release format
(the test suite's writer, tests/edm2_format.py, ``released=True``: the modules' whole state, one
embedded source string of the official file's size, default reductions) and read with our loader
and with plain ``pickle.load`` (the authors' reconstruct function replaced by one that returns its
argument, so the baseline does less than the official code, which also compiles the embedded
source and builds the modules), best of 3 after a warm-up, with our loader's breakdown.
"""
import argparse
import pickle
import resource
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from course import guiders, samplers  # noqa: E402
from course.imagenet import adm, edm2, presets  # noqa: E402
from course.imagenet.loading import ADM64_UNET  # noqa: E402

EDM2_IMG64 = dict(img_resolution=64, img_channels=3, label_dim=1000, channel_mult=[1, 2, 3, 4], num_blocks=3, attn_resolutions=[16, 8])
CONFIGS = {
    "shared": (dict(EDM2_IMG64, model_channels=32, num_blocks=2),
               dict(ADM64_UNET, model_channels=32, num_res_blocks=2, num_head_channels=32), 4),
    "xs": (dict(EDM2_IMG64, model_channels=128), None, 1),
    "s": (dict(EDM2_IMG64, model_channels=192), dict(ADM64_UNET), 1),
}


@contextmanager
def fused_attention():
    """Swap the explicit softmax(QK^T)V of both families for torch's fused kernel (no PAG hook)."""
    orig_edm2, orig_adm = edm2.attention_weights, adm.qkv_attention

    def adm_fused(qkv, heads, new_order, perturbation=None):
        B, width, T = qkv.shape
        c = width // (3 * heads)
        if new_order:
            q, k, v = (t.reshape(B, heads, c, T).transpose(2, 3) for t in qkv.chunk(3, dim=1))
        else:
            q, k, v = (t.reshape(B, heads, c, T).transpose(2, 3) for t in qkv.reshape(B * heads, 3 * c, T).split(c, dim=1))
        return torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(2, 3).reshape(B, -1, T)

    adm.qkv_attention = adm_fused
    edm2.attention_weights = lambda logits, p=None: torch.softmax(logits, dim=-1)  # EDM2's einsum path stays
    try:
        yield
    finally:
        edm2.attention_weights, adm.qkv_attention = orig_edm2, orig_adm


def time_forward(fn, repeat, device):
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def bench_guided_sampling(dev, n, steps, tiny):
    """Images per second of guided EDM Heun sampling, batched branches vs separate calls."""
    cases = [("ADM ICG w=1.5", "adm-icg", lambda D, b: guiders.IndependentConditionGuidance(D.D, 1.5, 1000, batched=b)),
             ("ADM PAG w=4", "adm-pag", lambda D, b: guiders.PAG(D.D, D.layers, 4.0, batched=b)),
             ("EDM2 PAG w=2", "edm2-s-pag", lambda D, b: guiders.PAG(D.D, D.layers, 2.0, batched=b))]
    sig = samplers.edm_sigmas(steps, 0.002, 80.0, 7.0)
    for label, name, remake in cases:
        D, _ = presets.build(name, tiny=tiny)
        D.D.to(dev)
        g = torch.Generator().manual_seed(0)
        labels = torch.randint(0, 1000, (n,), generator=g).to(dev)
        noise = (torch.randn(n, 3, 64, 64, generator=g) * sig[0].item()).to(dev)
        rates = {}
        for batched in (True, False):
            Dg = remake(D, batched)
            with torch.no_grad():
                t = time_forward(lambda: samplers.edm_heun(Dg, noise, sig, labels), 1, dev)
            rates[batched] = n / t
        size = "tiny random config" if tiny else "released config"
        print(f"guided sampling, {label} ({size}), {n} images, {steps} Heun steps: batched {rates[True]:.2f} img/s, "
              f"separate calls {rates[False]:.2f} img/s (batched/separate {rates[True] / rates[False]:.2f}x)")


def bench_loading(sizes=("xs", "s"), repeat=5):
    """Seconds to load an EDM2 file in the release format: ours (with its breakdown) vs plain
    pickle.load, same file, best of ``repeat`` after one warm-up read of each."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import edm2_format

    from course import checkpoints
    from course.imagenet import loading

    def best(fn):
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    def plain_pickle(path):
        edm2_format._install_fake_module()  # the authors' reconstruct function, replaced by one that returns its argument
        sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj = lambda meta: meta
        with open(path, "rb") as f:
            return pickle.load(f)

    for size in sizes:
        cfg = CONFIGS[size][0]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"edm2-img64-{size}-random.pkl"
            edm2_format.write_edm2_pickle(path, edm2.EDM2Denoiser(**cfg), cfg, released=True)
            mb = path.stat().st_size / 2**20
            t = time.perf_counter()
            model = loading.load_edm2_pickle(path)
            first = time.perf_counter() - t
            params = sum(p.numel() for p in model.parameters())
            dtypes = sorted({str(p.dtype).replace("torch.", "") for p in model.parameters()})
            del model
            plain_pickle(path)
            t_pickle = best(lambda: plain_pickle(path))
            t_ours = best(lambda: loading.load_edm2_pickle(path))
            t_read = best(lambda: loading.read_edm2_pickle(path))
            kwargs, state = loading.read_edm2_pickle(path)
            t_check = best(lambda: checkpoints.check_state(state, state, path))
            t_isfinite = best(lambda: [torch.isfinite(v).all() for v in state.values()])
            t_build = best(lambda: checkpoints.build_checked(edm2.EDM2Denoiser, kwargs, state, path, assign=True))
            t_random = best(lambda: edm2.EDM2Denoiser(**cfg))
            print(f"loading EDM2 {size} ({mb:.0f} MB file in the release format, {params / 1e6:.1f}M parameters, kept as "
                  f"{'/'.join(dtypes)}): ours {t_ours:.2f} s, pickle.load {t_pickle:.2f} s (ours / pickle.load "
                  f"{t_ours / t_pickle:.2f}x; best of {repeat}). Breakdown: restricted unpickle {t_read:.2f} s, "
                  f"shape + dtype + finiteness check {t_check:.3f} s (elementwise isfinite would take {t_isfinite:.3f} s), "
                  f"meta build + check + assign {t_build:.2f} s (a randomly initialised build alone: {t_random:.2f} s). "
                  f"First load in this process {first:.2f} s (includes torch's one-time imports for the meta device)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sizes", default="shared,xs,s")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sampling-only", action="store_true")
    ap.add_argument("--loading-only", action="store_true")
    args = ap.parse_args()
    dev = args.device
    print(f"torch {torch.__version__}, device {dev}, {torch.get_num_threads()} CPU threads")
    bench_loading()
    if args.loading_only:
        return
    # the tiny random-weight configuration of lesson 7 (the released checkpoints, if present, on a GPU)
    real = dev != "cpu" and all(presets.available(p) for p in ("adm-icg", "adm-pag", "edm2-s-pag"))
    bench_guided_sampling(dev, n=4 if dev == "cpu" else 64, steps=8 if dev == "cpu" else 32, tiny=not real)
    if args.sampling_only:
        return
    for size in args.sizes.split(","):
        e_cfg, a_cfg, batch = CONFIGS[size]
        if dev == "cuda":
            batch *= 16
        x = torch.randn(batch, 3, 64, 64, device=dev)
        for family, make, call in [
            ("EDM2", lambda: edm2.EDM2Denoiser(**e_cfg), lambda m: m(x, torch.full((batch,), 1.0, device=dev), torch.zeros(batch, dtype=torch.long, device=dev))),
            ("ADM", (lambda: adm.ADMUNet(**a_cfg)) if a_cfg else None, lambda m: m(x, torch.full((batch,), 500.0, device=dev), torch.zeros(batch, dtype=torch.long, device=dev))),
        ]:
            if make is None:
                continue
            model = make().to(dev).eval()
            params = sum(p.numel() for p in model.parameters())
            if dev == "cuda":
                torch.cuda.reset_peak_memory_stats()
            with torch.no_grad():
                t = time_forward(lambda: call(model), args.repeat, dev)
                with fused_attention():
                    t_base = time_forward(lambda: call(model), args.repeat, dev)
            mem = (f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB" if dev == "cuda"
                   else f"process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
            print(f"{family} {size}: {params / 1e6:.1f}M params, batch {batch}: forward {t * 1000:.0f} ms "
                  f"({batch / t:.1f} img/s); fused-attention baseline {t_base * 1000:.0f} ms; {mem}")


if __name__ == "__main__":
    main()
