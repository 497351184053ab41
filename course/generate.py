"""Generate ImageNet-64 images for a preset, in one process or many: image grid, batch files and
a metrics JSON (with FID when a feature network and reference statistics are given).

    python -m course.generate edm2-s-autoguidance-fid --checkpoints DIR --out runs/ag --seeds 0-999
    torchrun --standalone --nproc_per_node=8 -m course.generate edm2-s-autoguidance-fid \\
        --checkpoints DIR --out runs/ag --seeds 0-49999 --fid-network inception.pt2 --fid-ref ref.npz
    python -m course.generate adm-cg --tiny --out runs/tiny --n 16      # tiny random networks, seeds 0-15

**An image depends on its seed alone.** Its label, its starting noise and every random number its
sampler draws come from a generator seeded with that image's seed (one generator per row of a
batch, as EDM2's generate_images.py does), and batches are fixed by the seeds, not by the number
of processes: batch k holds the requested seeds in [k * batch, (k + 1) * batch). So the images
of seeds 0-999 are bit for bit the same whether 1 process made them or 4, in one run or resumed
after a kill. (Change ``--batch`` and the batches change: on a GPU the arithmetic of a batched
convolution can differ in the last bit, so the batch size is part of the run's configuration.)

**Many processes** (``torchrun``; NCCL on GPUs, gloo on CPUs, process group from torchrun's
environment): rank 0 checks the folder and writes ``run.json``; the batches still to make are
dealt round robin to the ranks, which meet at a barrier after each round; each rank writes only
its own batch files. FID's feature statistics (sums of features and of their outer products, in
float64, about the reference mean) are summed over the ranks with ``all_reduce`` and the distance
is computed once.

**Resumable**: each batch file (``images`` uint8, ``labels``, ``seeds``) is written atomically
with its SHA-256 beside it (``.sha256``). A rerun into the same folder - with any number of
processes, and any seed set - keeps the batches whose file, hash and seeds match and makes the
rest, provided the configuration recorded in ``run.json`` (preset, w, batch, sampler, tiny,
autocast, checkpoints' sizes and times, course version) is this run's; otherwise every rank stops
with the same one-line error. A process group that cannot form (fewer processes than
WORLD_SIZE) or a rank that stops answering ends with an error after ``--timeout`` seconds
instead of hanging.
"""
import argparse
import datetime
import hashlib
import json
import math
import os
import re
import sys
import time
from importlib import metadata
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import fid
from .checkpoints import atomic_write
from .imagenet import presets

MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes any 64-bit seed; EDM2 uses seeds < 2^32


class ResumeError(ValueError):
    """The output folder holds a run made with other settings (or files this command did not write)."""


class DistributedError(RuntimeError):
    """The process group could not form, or a rank stopped answering."""


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


# --- seeds and batches ----------------------------------------------------------------------------------
def parse_seeds(text):
    """'0-49999' or '1,5,10-19' -> the sorted list of distinct seeds; a clear error otherwise."""
    seeds = set()
    for part in str(text).split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise ValueError(f"--seeds must be numbers and ranges like 0-49999 or 1,5,10-19; got {text!r}")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise ValueError(f"--seeds range {lo}-{hi} runs backwards; write {hi}-{lo}")
        if hi > MAX_SEED:
            raise ValueError(f"--seeds: {hi} is larger than the largest seed, 2^63 - 1 = {MAX_SEED}")
        if hi - lo + 1 + len(seeds) > 10**8:
            raise ValueError("--seeds asks for more than 100 million images; split the run")
        seeds.update(range(lo, hi + 1))
    return sorted(seeds)


def format_seeds(seeds):
    """[0, 1, 2, 5] -> '0-2,5' (the inverse of parse_seeds)."""
    parts, start = [], None
    for i, s in enumerate(seeds):
        if start is None:
            start = s
        if i + 1 == len(seeds) or seeds[i + 1] != s + 1:
            parts.append(f"{start}-{s}" if s != start else f"{s}")
            start = None
    return ",".join(parts)


def batches_of(seeds, batch):
    """[(k, seeds of batch k)] for sorted ``seeds``: batch k holds the seeds in [k batch, (k+1) batch)."""
    out = {}
    for s in seeds:
        out.setdefault(s // batch, []).append(s)
    return sorted(out.items())


def batch_path(out, k):
    return Path(out) / f"batch_{k:05d}.safetensors"


def make_labels_and_generators(seeds, num_classes=1000):
    """One CPU generator per seed, and each image's label drawn first from its own generator
    (the sampler's noise follows from the same generator)."""
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    labels = torch.stack([torch.randint(0, num_classes, (), generator=g) for g in gens])
    return labels, gens


# --- the folder's record --------------------------------------------------------------------------------
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


def run_config(preset, w, batch, tiny, autocast, checkpoints=None, steps=None):
    """Everything that decides the images of a batch (not the seeds: a run may be extended)."""
    p = presets.PRESETS[preset]
    files = {}
    if not tiny:
        for name in presets.files_of(preset):
            path = presets.find_checkpoint(name, checkpoints)
            st = path.stat()
            files[name] = dict(bytes=st.st_size, mtime=int(st.st_mtime))
    sampler = dict(p["sampler"], **({"steps": int(steps)} if steps else {}))
    return dict(preset=preset, w=float(p["w"] if w is None else w), batch=int(batch), sampler=sampler,
                tiny=bool(tiny), autocast=bool(autocast), checkpoints=files, course_version=_course_version())


def _check_resume(out, config):
    """None if ``out`` is new or holds a run with this configuration; else a ResumeError."""
    if out.exists() and not out.is_dir():
        raise ResumeError(f"--out {out} is a file, not a folder; choose a folder name")
    record = out / "run.json"
    batches = sorted(p.name for p in out.glob("batch_*.safetensors")) if out.is_dir() else []
    if not record.exists():
        if batches:
            raise ResumeError(f"{out} holds {len(batches)} batch file(s) but no run.json: they were not made by this "
                              "command (or by an older version). Use a new --out folder, or delete that one to start fresh.")
        return
    try:
        before = json.loads(record.read_text())["config"]
        if not isinstance(before, dict):
            raise TypeError("config is not a mapping")
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise ResumeError(f"{record} is unreadable ({err}); delete {out} to start fresh") from None
    differ = {k: (before.get(k), v) for k, v in config.items() if before.get(k) != v}
    if differ:
        lines = "; ".join(f"{k}: the folder has {a!r}, this run asks {b!r}" for k, (a, b) in differ.items())
        raise ResumeError(f"{out} holds a run made with other settings ({lines}). Resuming would mix images made "
                          "differently. Use a new --out folder, or delete that one to start fresh.")


def _batch_done(out, k, seeds):
    """True if batch k's file, its recorded hash and its seeds are those of this run."""
    path, digest = batch_path(out, k), batch_path(out, k).with_suffix(".safetensors.sha256")
    if not (path.is_file() and digest.is_file()):
        return False
    try:
        if digest.read_text().strip() != _sha256(path):
            return False
        return load_file(str(path)).get("seeds", torch.empty(0)).tolist() == list(seeds)
    except (OSError, SafetensorError, UnicodeDecodeError, ValueError):
        return False


# --- processes ------------------------------------------------------------------------------------------
class _Group:
    """The processes of this run: one (no torch.distributed), or torchrun's process group."""

    def __init__(self, device, timeout):
        self.world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        self.rank, self.local_rank, self.dist = 0, 0, None
        if self.world == 1:
            return
        import torch.distributed as dist

        backend = "nccl" if str(device).startswith("cuda") else "gloo"
        try:
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
        except Exception as err:  # DistStoreError, RuntimeError, ValueError: whatever the rendezvous raises
            raise DistributedError(f"the {self.world} processes of WORLD_SIZE={self.world} did not all join within "
                                   f"{timeout:g} s ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
                                   "Start as many processes as --nproc_per_node x --nnodes (torchrun sets WORLD_SIZE), "
                                   "or raise --timeout") from None
        self.dist, self.rank = dist, dist.get_rank()
        self.local_rank = int(os.environ.get("LOCAL_RANK", self.rank))

    def _guard(self, what, fn, *args):
        try:
            return fn(*args)
        except Exception as err:
            raise DistributedError(f"rank {self.rank}: {what} failed ({type(err).__name__}: "
                                   f"{str(err).splitlines()[0] if str(err) else ''}); another rank stopped or stopped "
                                   "answering - rerun the same command to resume") from None

    def barrier(self):
        if self.dist:
            self._guard("waiting for the other ranks", self.dist.barrier)

    def broadcast(self, obj):
        """rank 0's ``obj`` on every rank."""
        if not self.dist:
            return obj
        box = [obj]
        self._guard("receiving rank 0's decision", self.dist.broadcast_object_list, box, 0)
        return box[0]

    def sum(self, tensor):
        """The sum of ``tensor`` (CPU) over the ranks, on every rank."""
        if not self.dist:
            return tensor
        dev = f"cuda:{self.local_rank}" if self.dist.get_backend() == "nccl" else "cpu"
        t = tensor.to(dev)
        self._guard("summing over the ranks", self.dist.all_reduce, t)
        return t.cpu()

    def close(self):
        if self.dist and self.dist.is_initialized():
            self.dist.destroy_process_group()


def _check_device(device, group):
    device = str(device)
    if device == "cpu":
        return "cpu"
    m = re.fullmatch(r"cuda(?::(\d+))?", device)
    if not m:
        raise ValueError(f"--device must be cpu, cuda or cuda:N; got {device!r}")
    if not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for, but this PyTorch sees no CUDA GPU; use --device cpu")
    index = int(m.group(1)) if m.group(1) is not None else (group.local_rank if group.world > 1 else 0)
    if index >= torch.cuda.device_count():
        raise ValueError(f"device cuda:{index} was asked for, but this machine has {torch.cuda.device_count()} GPU(s)")
    torch.cuda.set_device(index)
    return f"cuda:{index}"


# --- the run --------------------------------------------------------------------------------------------
def generate(preset, out, seeds=None, n=None, batch=16, w=None, checkpoints=None, tiny=False, device="cpu", autocast=False,
             fid_network=None, fid_ref=None, steps=None, timeout=600.0, progress=True):
    """Generate the images of ``seeds`` (a list, or a string like '0-999'; ``n`` = seeds 0..n-1)
    of ``preset`` into the folder ``out``, resuming a matching run there, in this process or as
    one rank of torchrun's process group. Returns the metrics dict (on rank 0; None on the
    others) that is also written to ``out/metrics.json``."""
    if preset not in presets.PRESETS:
        raise ValueError(f"unknown preset {preset!r}; presets: {sorted(presets.PRESETS)}")
    if seeds is not None and n is not None:
        raise ValueError("give --seeds or --n, not both (--n N means --seeds 0-(N-1))")
    if n is not None and (int(n) != n or n < 1):
        raise ValueError(f"--n must be a whole number >= 1; got {n}")
    seeds = parse_seeds(seeds) if isinstance(seeds, str) else sorted(set(int(s) for s in (seeds or range(int(n or 64)))))
    if not seeds or seeds[0] < 0 or seeds[-1] > MAX_SEED:
        raise ValueError(f"seeds must lie in 0..{MAX_SEED}")
    if int(batch) != batch or batch < 1:
        raise ValueError(f"--batch must be a whole number >= 1; got {batch}")
    if w is not None and not math.isfinite(w):
        raise ValueError(f"--w must be a finite number; got {w}")
    if steps is not None and (int(steps) != steps or steps < 1):
        raise ValueError(f"--steps must be a whole number >= 1; got {steps}")
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and 0 < timeout <= 86400):
        raise ValueError(f"--timeout must be a number of seconds in (0, 86400]; got {timeout}")
    if bool(fid_network) != bool(fid_ref):
        raise ValueError("FID needs both --fid-network and --fid-ref")
    group = _Group(device, timeout)
    try:
        return _generate(group, preset, Path(out), seeds, int(batch), w, checkpoints, tiny, _check_device(device, group),
                         autocast, fid_network, fid_ref, steps, progress)
    finally:
        group.close()


def _generate(group, preset, out, seeds, batch, w, checkpoints, tiny, device, autocast, fid_network, fid_ref, steps, progress):
    rank, world = group.rank, group.world
    config = run_config(preset, w, batch, tiny, autocast, checkpoints, steps)
    batches = batches_of(seeds, batch)
    decision = None
    if rank == 0:  # one view of the folder, shared by every rank
        try:
            _check_resume(out, config)
            decision = dict(done=[k for k, s in batches if out.is_dir() and _batch_done(out, k, s)])
        except ResumeError as err:
            decision = dict(error=str(err))
    decision = group.broadcast(decision)
    if "error" in decision:
        raise ResumeError(decision["error"])
    D, description = presets.build(preset, checkpoints, tiny=tiny, w=w)  # before any folder is made: a bad file leaves nothing
    precision = presets.to_device(D, preset, device)
    family = presets.PRESETS[preset]["family"]
    if rank == 0:
        print(f"{description} Precision: {precision}. {world} process(es), {len(seeds)} seeds in {len(batches)} batches.")
        out.mkdir(parents=True, exist_ok=True)
        state = dict(config=config, seeds=format_seeds(seeds), complete=False)
        atomic_write(out / "run.json", lambda tmp: Path(tmp).write_text(json.dumps(state, indent=2)))
    group.barrier()

    done = set(decision["done"])
    todo = [(k, s) for k, s in batches if k not in done]
    mine = todo[rank::world]
    t0, made = time.perf_counter(), 0
    for r in range(math.ceil(len(todo) / world)):
        if r < len(mine):
            k, batch_seeds = mine[r]
            labels, gens = make_labels_and_generators(batch_seeds)
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast and device.startswith("cuda")):
                x = presets.sample(preset, D, labels.to(device), gens, device, progress=progress and rank == 0, steps=steps)
            path = batch_path(out, k)
            record = dict(images=presets.to_uint8(x.float(), family).cpu(), labels=labels, seeds=torch.tensor(batch_seeds, dtype=torch.int64))
            atomic_write(path, lambda tmp: save_file(record, tmp))
            digest = _sha256(path)
            atomic_write(path.with_suffix(".safetensors.sha256"), lambda tmp: Path(tmp).write_text(digest + "\n"))
            made += len(batch_seeds)
        group.barrier()  # the ranks stay in step, as EDM2's generate_images.py does
    seconds = time.perf_counter() - t0
    made_all = int(group.sum(torch.tensor([made], dtype=torch.float64)).item())

    result_fid = None
    if fid_network:  # feature sums over each rank's share of the batches, summed over the ranks
        net = fid.load_feature_network(fid_network, device)
        reference = fid.load_reference(fid_ref)
        s1, s2, count = None, None, 0
        for k, _ in batches[rank::world]:
            feats = fid.features_of(load_file(str(batch_path(out, k)))["images"].to(device), net)
            n_k, a, b = fid.feature_sums(feats, shift=reference[0])
            s1, s2, count = (a, b, n_k) if s1 is None else (s1 + a, s2 + b, count + n_k)
        dim = reference[0].shape[0]
        packed = torch.zeros(1 + dim + dim * dim, dtype=torch.float64)
        if s1 is not None:
            if s1.shape[0] != dim:
                raise ValueError(f"features are {s1.shape[0]}-d but the reference statistics are {dim}-d: "
                                 "were they made with another feature network?")
            packed[0], packed[1 : 1 + dim], packed[1 + dim :] = count, s1, s2.reshape(-1)
        packed = group.sum(packed)
        result_fid = fid.frechet_from_sums(int(packed[0]), packed[1 : 1 + dim], packed[1 + dim :].reshape(dim, dim), reference,
                                           shift=reference[0])

    if rank != 0:
        return None
    hashes = {}
    for k, batch_seeds in batches:
        path = batch_path(out, k)
        if not _batch_done(out, k, batch_seeds):
            raise ResumeError(f"{path} is missing or does not hold seeds {format_seeds(batch_seeds)} after the run; "
                              "another process changed the folder? Rerun to make it again.")
        hashes[path.name] = path.with_suffix(".safetensors.sha256").read_text().strip()
    state = dict(config=config, seeds=format_seeds(seeds), complete=True, batches=hashes)
    atomic_write(out / "run.json", lambda tmp: Path(tmp).write_text(json.dumps(state, indent=2)))
    first = []
    for k, _ in batches:
        first.append(load_file(str(batch_path(out, k)))["images"])
        if sum(len(f) for f in first) >= 64:
            break
    save_grid(out / "grid.png", torch.cat(first)[:64])
    result = dict(preset=preset, description=description, n=len(seeds), seeds=format_seeds(seeds),
                  **{k: v for k, v in config.items() if k != "preset"}, world_size=world, precision=precision,
                  seconds_this_run=round(seconds, 2), images_this_run=made_all,
                  images_per_second=round(made_all / seconds, 4) if made_all else None, device=device)
    if result_fid is not None:
        result["fid"] = result_fid
        if len(seeds) < 50_000:
            result["fid_note"] = f"computed on {len(seeds)} images; published FIDs use 50,000 (fewer images bias FID upward)"
    atomic_write(out / "metrics.json", lambda tmp: Path(tmp).write_text(json.dumps(result, indent=2)))
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m course.generate", description=__doc__.splitlines()[0])
    ap.add_argument("preset", choices=sorted(presets.PRESETS))
    ap.add_argument("--out", required=True, help="output folder (grid.png, batch_*.safetensors, run.json, metrics.json)")
    ap.add_argument("--checkpoints", help="folder with the checkpoint files (default: $COURSE_CHECKPOINTS)")
    ap.add_argument("--tiny", action="store_true", help="tiny random-weight networks instead of the checkpoints (noise images)")
    ap.add_argument("--seeds", help="the images' seeds, e.g. 0-49999 or 1,5,10-19 (default: 0-63)")
    ap.add_argument("--n", type=int, help="shorthand for --seeds 0-(n-1)")
    ap.add_argument("--batch", type=int, default=16, help="images per batch and process (part of the configuration)")
    ap.add_argument("--w", type=float, help="override the preset's guidance scale")
    ap.add_argument("--steps", type=int, help="override the preset's number of sampler steps")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu, cuda or cuda:N "
                    "(under torchrun, cuda means each rank's own GPU, cuda:LOCAL_RANK)")
    ap.add_argument("--autocast", action="store_true", help="bf16 autocast on CUDA")
    ap.add_argument("--fid-network", help="feature network, torch.export .pt2 or TorchScript (uint8 images -> features)")
    ap.add_argument("--fid-ref", help=".npz reference statistics with arrays mu and sigma")
    ap.add_argument("--timeout", type=float, default=600.0,
                    help="seconds to wait for the other processes (forming the group, each barrier) before stopping")
    args = ap.parse_args(argv)
    rank = os.environ.get("RANK", "0")
    try:
        result = generate(args.preset, args.out, args.seeds, args.n, args.batch, args.w, args.checkpoints, args.tiny,
                          args.device, args.autocast, args.fid_network, args.fid_ref, args.steps, args.timeout)
    except (FileNotFoundError, ValueError, DistributedError, FloatingPointError) as err:
        # missing or corrupt checkpoints, bad arguments, a foreign --out, a process group that failed
        prefix = f"error (rank {rank}): " if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 else "error: "
        sys.stderr.write(prefix + " ".join(str(err).split()) + "\n")  # one write: the ranks' lines do not interleave
        sys.stderr.flush()
        return 2
    if result is not None:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
