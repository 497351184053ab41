"""Generate ImageNet-64 images for a preset: image grid, samples and a metrics JSON.

    python -m course.generate edm2-s-autoguidance-fid --checkpoints DIR --out runs/ag --n 1000
    python -m course.generate adm-cg --tiny --out runs/tiny --n 16        # no checkpoints: tiny random networks

Resumable: images are written in batches (``batch_NNNNN.safetensors``), and ``run.json`` records
what makes them (preset, w, seed, sampler, batch, checkpoints' sizes and times, tiny, autocast,
course version) with each batch file's SHA-256. A rerun into the same folder resumes only when
that configuration matches (``--n`` may grow or shrink), and uses only batch files whose hash is
the recorded one; otherwise it stops and says what differs. Every file is written atomically.
With ``--fid-network`` (an exported .pt2 or TorchScript feature network) and ``--fid-ref`` (an
.npz with mu, sigma) the JSON also holds the Fréchet distance.
"""
import argparse
import hashlib
import json
import sys
import time
from importlib import metadata
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from . import fid
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


class ResumeError(ValueError):
    """The output folder holds a run made with other settings (or files this command did not write)."""


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _course_version():
    try:
        return metadata.version("guidance-course")
    except metadata.PackageNotFoundError:
        return "unknown"


def run_config(preset, w, seed, batch, tiny, autocast, checkpoints=None):
    """Everything that decides the images of a batch (not n: a run may be extended)."""
    p = presets.PRESETS[preset]
    files = {}
    if not tiny:
        for name in presets.files_of(preset):
            path = presets.find_checkpoint(name, checkpoints)
            st = path.stat()
            files[name] = dict(bytes=st.st_size, mtime=int(st.st_mtime))
    return dict(preset=preset, w=float(p["w"] if w is None else w), seed=int(seed), batch=int(batch), sampler=p["sampler"],
                tiny=bool(tiny), autocast=bool(autocast), checkpoints=files, course_version=_course_version())


def _check_resume(out, config):
    """The recorded batch hashes if ``out`` holds a run with this configuration; else a ResumeError."""
    record = out / "run.json"
    batches = sorted(p.name for p in out.glob("batch_*.safetensors"))
    if not record.exists():
        if batches:
            raise ResumeError(f"{out} holds {len(batches)} batch file(s) but no run.json: they were not made by this "
                              "command (or by an older version). Use a new --out folder, or delete that one to start fresh.")
        return {}
    try:
        previous = json.loads(record.read_text())
        before = previous["config"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ResumeError(f"{record} is unreadable ({err}); delete {out} to start fresh") from None
    differ = {k: (before.get(k), v) for k, v in config.items() if before.get(k) != v}
    if differ:
        lines = "; ".join(f"{k}: the folder has {a!r}, this run asks {b!r}" for k, (a, b) in differ.items())
        raise ResumeError(f"{out} holds a run made with other settings ({lines}). Resuming would mix images made "
                          "differently. Use a new --out folder, or delete that one to start fresh.")
    return dict(previous.get("batches") or {})


def generate(preset, out, n=64, batch=16, seed=0, w=None, checkpoints=None, tiny=False, device="cpu", autocast=False,
             fid_network=None, fid_ref=None, progress=True):
    """Generate ``n`` images of ``preset`` into the folder ``out`` (resuming a matching run there).
    Returns the metrics dict that is also written to ``out/metrics.json``."""
    if preset not in presets.PRESETS:
        raise ValueError(f"unknown preset {preset!r}; presets: {sorted(presets.PRESETS)}")
    for name, value in (("n", n), ("batch", batch)):
        if int(value) != value or value < 1:
            raise ValueError(f"--{name} must be a whole number >= 1; got {value}")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for, but this PyTorch sees no CUDA GPU; use --device cpu")
    out = Path(out)
    config = run_config(preset, w, seed, batch, tiny, autocast, checkpoints)
    recorded = _check_resume(out, config) if out.exists() else {}
    D, description = presets.build(preset, checkpoints, tiny=tiny, w=w)  # before any folder is made: a bad file leaves nothing
    for module in [getattr(D, a, None) for a in ("D", "D_main", "D_guide", "classifier")] + [D]:
        if isinstance(module, torch.nn.Module):
            module.to(device)
    print(description)
    out.mkdir(parents=True, exist_ok=True)
    t0, made, hashes = time.perf_counter(), 0, {}

    def record(final=False):
        state = dict(config=config, n=int(n), complete=final, batches=hashes)
        atomic_write(out / "run.json", lambda tmp: Path(tmp).write_text(json.dumps(state, indent=2)))

    for b, start in enumerate(range(0, n, batch)):
        path = out / f"batch_{b:05d}.safetensors"
        m = min(batch, n - start)
        if path.exists() and recorded.get(path.name) == _sha256(path) and len(load_file(str(path))["labels"]) == m:
            hashes[path.name] = recorded[path.name]
            continue  # made by a run with this configuration: keep it
        g = torch.Generator().manual_seed(seed * 100_003 + b)  # one seed per batch: resumable and reproducible
        labels = torch.randint(0, 1000, (m,), generator=g).to(device)
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast and str(device).startswith("cuda")):
            x = presets.sample(preset, D, labels, g, device, progress=progress)
        atomic_write(path, lambda tmp: save_file({"images": to_uint8(x.float()).cpu(), "labels": labels.cpu()}, tmp))
        hashes[path.name] = _sha256(path)
        record()
        made += m
    seconds = time.perf_counter() - t0
    names = [f"batch_{b:05d}.safetensors" for b in range(len(range(0, n, batch)))]
    images = torch.cat([load_file(str(out / name))["images"] for name in names])[:n]
    record(final=True)
    save_grid(out / "grid.png", images[:64])
    result = dict(preset=preset, description=description, n=int(len(images)), **{k: v for k, v in config.items() if k != "preset"},
                  seconds_this_run=round(seconds, 2), images_this_run=made,
                  seconds_per_image=round(seconds / made, 4) if made else None, device=str(device))
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
    except (FileNotFoundError, ValueError) as err:  # missing or corrupt checkpoints, bad arguments, a foreign --out
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
