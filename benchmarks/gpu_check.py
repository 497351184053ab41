"""The ImageNet-64 GPU check: one script, under 10 minutes on one H100/H200, one table.

    python benchmarks/gpu_check.py                       # on a GPU; uses $COURSE_CHECKPOINTS if set
    python benchmarks/gpu_check.py --quick --device cpu  # the same code path on tiny networks (tests)

1. Forward throughput of EDM2-XS, EDM2-S and the ADM 64x64 UNet at batch 64, in fp32, fp16 and
   bf16 autocast (images per second; peak GPU memory).
2. Guided EDM Heun sampling (32 steps) at batch 64: autoguidance (two networks) and PAG / ICG with
   their branches batched into one call against separate calls.
3. A 1000-image autoguidance generation (edm2-s-autoguidance-fid, w = 1.70) through
   ``course.generate`` with timing. With the released checkpoints these are real samples; without
   them the same full-size networks run with random weights (the timing is the same, the images
   are noise) and the table says so.

It prints numbers only; nothing is asserted.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from course import generate, guiders, samplers  # noqa: E402
from course.imagenet import adm, edm2, presets  # noqa: E402
from course.imagenet.loading import ADM64_UNET  # noqa: E402

EDM2_IMG64 = dict(img_resolution=64, img_channels=3, label_dim=1000, channel_mult=[1, 2, 3, 4], num_blocks=3, attn_resolutions=[16, 8])
FULL = {"EDM2-XS": dict(EDM2_IMG64, model_channels=128), "EDM2-S": dict(EDM2_IMG64, model_channels=192), "ADM": dict(ADM64_UNET)}
QUICK = {"EDM2-XS": presets.TINY_EDM2, "EDM2-S": presets.TINY_EDM2, "ADM": presets.TINY_ADM}


def sync(dev):
    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, dev, repeat=3):
    fn()
    sync(dev)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        sync(dev)
        best = min(best, time.perf_counter() - t)
    return best


def make(name, cfg):
    return (adm.ADMUNet(**cfg) if name == "ADM" else edm2.EDM2Denoiser(**cfg)).eval()


def forward_table(configs, batch, dev, rows):
    for name, cfg in configs.items():
        model = make(name, cfg).to(dev)
        x = torch.randn(batch, 3, 64, 64, device=dev)
        y = torch.randint(0, 1000, (batch,), device=dev)
        t_in = torch.full((batch,), 500.0 if name == "ADM" else 1.0, device=dev)
        for precision in ("fp32", "fp16", "bf16"):
            if precision != "fp32" and not dev.startswith("cuda"):
                continue
            if dev.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            ctx = dict(device_type="cuda", dtype=torch.float16 if precision == "fp16" else torch.bfloat16, enabled=precision != "fp32") \
                if dev.startswith("cuda") else dict(device_type="cpu", enabled=False)
            with torch.no_grad(), torch.autocast(**ctx):
                t = timed(lambda: model(x, t_in, y), dev)
            mem = f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if dev.startswith("cuda") else "-"
            rows.append((f"forward {name}", f"batch {batch}, {precision}", f"{batch / t:.0f} img/s", mem))
        del model


def sampling_table(tiny, n, steps, dev, rows):
    sig = samplers.edm_sigmas(steps, 0.002, 80.0, 7.0)
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 1000, (n,), generator=g).to(dev)
    noise = (torch.randn(n, 3, 64, 64, generator=g) * sig[0].item()).to(dev)
    cases = [("autoguidance w=1.7 (S + XS)", "edm2-s-autoguidance-fid", None),
             ("PAG w=2 (EDM2-S)", "edm2-s-pag", lambda D, b: guiders.PAG(D.D, D.layers, 2.0, batched=b)),
             ("ICG w=1.5 (ADM)", "adm-icg", lambda D, b: guiders.IndependentConditionGuidance(D.D, 1.5, 1000, batched=b))]
    for label, preset, remake in cases:
        D, _ = presets.build(preset, tiny=tiny)
        D = D.to(dev) if isinstance(D, torch.nn.Module) else D
        for a in ("D", "D_main", "D_guide"):
            if isinstance(getattr(D, a, None), torch.nn.Module):
                getattr(D, a).to(dev)
        variants = [("two networks", D)] if remake is None else [("batched", remake(D, True)), ("separate", remake(D, False))]
        for how, Dg in variants:
            with torch.no_grad():
                t = timed(lambda: samplers.edm_heun(Dg, noise, sig, labels), dev, repeat=1)
            rows.append((f"sampling {label}", f"{n} images, {steps} steps, {how}", f"{n / t:.1f} img/s", "-"))


def generation(n, batch, dev, tiny_ok, rows, full_random, steps=None):
    checkpoints = os.environ.get("COURSE_CHECKPOINTS")
    real = presets.available("edm2-s-autoguidance-fid", checkpoints)
    if not real and full_random:
        # the released sizes with random weights: same cost, noise images. Built here, handed to
        # generate through a patched build so that the command's own loop is what is timed.
        torch.manual_seed(0)
        main = edm2.EDM2Denoiser(**FULL["EDM2-S"]).eval()
        guide = edm2.EDM2Denoiser(**FULL["EDM2-XS"]).eval()
        build = presets.build
        presets.build = lambda *a, **k: (guiders.Autoguidance(main, guide, 1.70), "full-size S + XS, RANDOM weights")
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        try:
            result = generate.generate("edm2-s-autoguidance-fid", out, n=n, batch=batch, device=dev, tiny=not real,
                                       checkpoints=checkpoints, autocast=dev.startswith("cuda"), steps=steps, progress=False)
        finally:
            if not real and full_random:
                presets.build = build
        seconds = time.perf_counter() - t
    steps = steps or presets.PRESETS["edm2-s-autoguidance-fid"]["sampler"]["steps"]
    what = "released checkpoints" if real else ("full-size random weights" if full_random else "tiny random networks")
    rows.append(("generate edm2-s-autoguidance-fid", f"{result['n']} images, {steps} steps, batch {batch}, bf16={dev.startswith('cuda')}, {what}",
                 f"{seconds:.0f} s ({result['n'] / seconds:.1f} img/s)", "-"))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="benchmarks/gpu_check.py", description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="tiny networks, few images: checks the code path in seconds")
    args = ap.parse_args(argv)
    dev = args.device
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    gpu = torch.cuda.get_device_name(0) if dev.startswith("cuda") else "CPU"
    rows = []
    t0 = time.perf_counter()
    forward_table(QUICK if args.quick else FULL, 2 if args.quick else 64, dev, rows)
    sampling_table(tiny=args.quick or not all(presets.available(p) for p in ("edm2-s-autoguidance-fid", "edm2-s-pag", "adm-icg")),
                   n=2 if args.quick else 64, steps=3 if args.quick else 32, dev=dev, rows=rows)
    generation(2 if args.quick else 1000, 2 if args.quick else 250, dev, True, rows, full_random=not args.quick,
               steps=3 if args.quick else None)  # None: the preset's own
    widths = [max(len(r[i]) for r in rows + [("what", "setting", "speed", "peak memory")]) for i in range(4)]
    print(f"\nImageNet-64 GPU check on {gpu}, torch {torch.__version__} ({time.perf_counter() - t0:.0f} s in all)")
    for r in [("what", "setting", "speed", "peak memory")] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    if not args.quick and not dev.startswith("cuda"):
        print("(CPU: fp16 / bf16 rows are skipped; the full check is meant for a GPU)")


if __name__ == "__main__":
    main()
