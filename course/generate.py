"""Generate ImageNet-64 images for a preset: image grid, samples and a metrics JSON.

    python -m course.generate edm2-s-autoguidance-fid --checkpoints DIR --out runs/ag --n 1000
    python -m course.generate adm-cg --tiny --out runs/tiny --n 16        # no checkpoints: tiny random networks

Resumable: images are written in batches (``batch_NNNNN.safetensors``); a rerun skips the batches
already there. Every file is written atomically. With ``--fid-network`` (an exported .pt2 or
TorchScript feature network) and ``--fid-ref`` (an .npz with mu, sigma) the JSON also holds the
Fréchet distance.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from . import fid, samplers
from .checkpoints import atomic_write
from .imagenet import presets


def to_uint8(x):
    """[-1, 1] images -> uint8 pixels (x * 127.5 + 128, clipped), as EDM2 saves them."""
    return (x * 127.5 + 128).clip(0, 255).to(torch.uint8)


def save_grid(path, images_uint8, nrow=8):
    """A grid PNG of uint8 images [N, 3, H, W]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = (len(images_uint8) // nrow) * nrow or len(images_uint8)
    imgs = images_uint8[:n]
    rows = max(1, n // nrow)
    C, H, W = imgs.shape[1:]
    grid = imgs[: rows * min(nrow, n)].reshape(rows, -1, C, H, W).permute(0, 3, 1, 4, 2).reshape(rows * H, -1, C)
    atomic_write(path, lambda tmp: plt.imsave(tmp, grid.numpy(), format="png"))


def generate(preset, out, n=64, batch=16, seed=0, w=None, checkpoints=None, tiny=False, device="cpu", autocast=False,
             fid_network=None, fid_ref=None, progress=True):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    D, description = presets.build(preset, checkpoints, tiny=tiny, w=w)
    for module in [getattr(D, a, None) for a in ("D", "D_main", "D_guide", "classifier")] + [D]:
        if isinstance(module, torch.nn.Module):
            module.to(device)
    print(description)
    s = presets.PRESETS[preset]["sampler"]
    sigmas = samplers.edm_sigmas(s["steps"], s["sigma_min"], s["sigma_max"], s["rho"])
    t0, made = time.perf_counter(), 0
    for b, start in enumerate(range(0, n, batch)):
        path = out / f"batch_{b:05d}.safetensors"
        if path.exists():
            continue
        g = torch.Generator().manual_seed(seed * 100_003 + b)  # one seed per batch: resumable and reproducible
        m = min(batch, n - start)
        labels = torch.randint(0, 1000, (m,), generator=g).to(device)
        noise = torch.randn(m, 3, 64, 64, generator=g).to(device) * sigmas[0].item()
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast and device.startswith("cuda")):
            x = samplers.edm_heun(D, noise, sigmas, labels, progress=progress)
        atomic_write(path, lambda tmp: save_file({"images": to_uint8(x.float()).cpu(), "labels": labels.cpu()}, tmp))
        made += m
    seconds = time.perf_counter() - t0
    parts = [load_file(str(p)) for p in sorted(out.glob("batch_*.safetensors"))]
    images = torch.cat([p["images"] for p in parts])[:n]
    save_grid(out / "grid.png", images[:64])
    result = dict(preset=preset, description=description, tiny=tiny, n=int(len(images)), w=w if w is not None else presets.PRESETS[preset]["w"],
                  sampler=s, seconds_this_run=round(seconds, 2), images_this_run=made,
                  seconds_per_image=round(seconds / made, 4) if made else None, device=device)
    if fid_network and fid_ref:
        net = fid.load_feature_network(fid_network, device)
        result["fid"] = fid.frechet_to_reference(fid.features_of(images.to(device), net), fid.load_reference(fid_ref))
        if len(images) < 50_000:
            result["fid_note"] = f"computed on {len(images)} images; published FIDs use 50,000 (fewer images bias FID upward)"
    atomic_write(out / "metrics.json", lambda tmp: Path(tmp).write_text(json.dumps(result, indent=2)))
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m course.generate", description=__doc__.splitlines()[0])
    ap.add_argument("preset", choices=sorted(presets.PRESETS))
    ap.add_argument("--out", required=True, help="output folder (grid.png, batch_*.safetensors, metrics.json)")
    ap.add_argument("--checkpoints", help="folder with the checkpoint files (default: $COURSE_CHECKPOINTS)")
    ap.add_argument("--tiny", action="store_true", help="tiny random-weight networks instead of the checkpoints (noise images)")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--w", type=float, help="override the preset's guidance scale")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--autocast", action="store_true", help="bf16 autocast on CUDA")
    ap.add_argument("--fid-network", help="feature network, torch.export .pt2 or TorchScript (uint8 images -> features)")
    ap.add_argument("--fid-ref", help=".npz reference statistics with arrays mu and sigma")
    args = ap.parse_args(argv)
    try:
        result = generate(args.preset, args.out, args.n, args.batch, args.seed, args.w, args.checkpoints, args.tiny, args.device,
                          args.autocast, args.fid_network, args.fid_ref)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
