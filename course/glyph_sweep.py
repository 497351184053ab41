"""The measured sweeps of the glyph rung (lesson 6b), made once by a command and read by the lesson.

    python -m course.glyph_sweep data [--stages scan seeds ablation] [--share auto] [--force]

Too slow for a lesson's five minutes (hours of 2 CPU cores), so run once, stage by stage, each
result written as soon as it is measured (atomically; a stopped run resumes where it was):

* ``scan`` - every guider of :func:`course.glyph_models.guiders` at each w of :data:`SCAN_WS`, plus
  the unguided model, from the same noise (seed 0, :data:`SCAN_N` samples, 20 of each letter). The
  128-d features of every sample and the feature net's predicted letter are kept (float16), so the
  lesson recomputes any score - FD against any subset of the test fonts - without sampling again.
* ``seeds`` - the unguided model and each guider at its best w of the scan (lowest FD), three more
  seeds of :data:`SEEDS_N` samples each: the numbers the lesson quotes, with their spread (rows of
  another sample count are kept, and ignored by the lesson).
* ``ablation`` - autoguidance at its best w with the guide degraded one way at a time (smaller
  only, shorter only: ``glyphs_guide_smaller`` / ``glyphs_guide_shorter``), same noise as the scan,
  whose autoguidance rows are the guide degraded both ways (the committed ``glyphs_guide``).

``--share auto`` lets several processes share the work: each takes the next sample set that no
other live process has claimed (on 2 cores, two one-thread processes sample about 1.4 times as
fast as one of two threads; measured). They write the same files, one result at a time, under a
lock.

Scores are against the test fonts (:func:`course.digits.measure`); samples come from EDM's Heun
sampler with :data:`STEPS` steps, as the main model's learning curve.
"""
import argparse
import contextlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from . import checkpoints, digits, glyph_models, glyphs, samplers

SCAN_WS = (2.0, 3.0, 4.0, 6.0)  # every guider (6: CG's FD still fell at 4, the end of the first scan)
SCAN_WS_MORE = {"cg": (8.0, 12.0)}  # and CG's still fell at 6: its scan goes on until FD turns
SCAN_N = 520  # 20 of each letter
SEEDS = (1, 2, 3)
SEEDS_N = 1040  # 40 of each letter: FD's bias and spread both shrink with n (520 gave the first table)
STEPS = 16
# The guide degraded one way at a time; both ways is the committed guide (the scan's autoguidance rows).
ABLATION = {"smaller only": "glyphs_guide_smaller", "shorter only": "glyphs_guide_shorter"}
CHUNK = 65  # samples per sampler call: one call's numbers, less memory, and faster (4.8 ms per image at batches
# of 64-128 against 7.0 at 520, 2 threads; measured)


def labels_for(n):
    """[n] letters in turn: 0, 1, ..., 25, 0, 1, ..."""
    return torch.arange(glyph_models.NUM_CLASSES).repeat(n // glyph_models.NUM_CLASSES + 1)[:n]


@torch.no_grad()  # not inference_mode: classifier guidance takes a gradient inside (torch.enable_grad)
def generate(D, n, seed, steps=None, chunk=None):
    """n samples [n, 1, 32, 32] of D for :func:`labels_for` (n), from seeded noise, with ``steps``
    Heun steps (default :data:`STEPS`); sampled ``chunk`` at a time (default :data:`CHUNK`; each
    row's path depends only on its own noise: the guiders are row-wise)."""
    steps, chunk = steps or STEPS, chunk or CHUNK
    y = labels_for(n)
    g = torch.Generator().manual_seed(seed)
    sigmas = samplers.edm_sigmas(steps, sigma_max=80.0)
    x = torch.randn((n, 1, 32, 32), generator=g) * sigmas[0].item()
    return torch.cat([samplers.edm_heun(D, x[i:i + chunk], sigmas, y[i:i + chunk]) for i in range(0, n, chunk)]), y


@torch.inference_mode()
def features_of(samples, feature_net):
    """(features [N, 128], predicted letter [N]) of samples clamped to [-1, 1]."""
    s = samples.clamp(-1, 1)
    f = feature_net.features(s)
    return f, feature_net.head(f).argmax(1)


def load(folder=None):
    """The sweeps: dict with ``rows`` (one per sample set: stage, guider, w, seed, n, fd, precision,
    recall, accuracy, seconds), ``best_w`` (per guider, from the scan), ``settings`` and ``command``;
    and ``features`` - {key: (features [n, 128] float32, predicted [n], requested [n])} of the scan."""
    folder = Path(folder or checkpoints.data_folder())
    path = folder / "glyphs_sweep.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; it is written by: python -m course.glyph_sweep data")
    out = json.loads(path.read_text())
    feats = {}
    npz = folder / "glyphs_sweep.npz"
    if npz.exists():
        with np.load(npz) as z:
            for key in z.files:
                if key.endswith("/features"):
                    k = key[: -len("/features")]
                    feats[k] = (torch.from_numpy(z[key].astype(np.float32)), torch.from_numpy(z[f"{k}/predicted"].astype(np.int64)),
                                labels_for(len(z[key])))
    out["features"] = feats
    return out


def _savez(path, arrays):
    with open(path, "wb") as f:  # a file object: np.savez would add ".npz" to a bare temporary name
        np.savez_compressed(f, **arrays)


def key_of(guider, w):
    return "unguided" if guider == "unguided" else f"{guider}@{w:g}"


@contextlib.contextmanager
def _locked(folder):
    """An exclusive lock on folder/.glyphs_sweep.lock (processes of --share take turns writing)."""
    try:
        import fcntl
    except ImportError:  # not on Windows: one process at a time there
        yield
        return
    with open(Path(folder) / ".glyphs_sweep.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _alive(pid):
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _print(line):
    print(line, flush=True)


def run(folder, stages=("scan", "seeds", "ablation"), force=False, share=False, log=_print):
    """Measure what ``stages`` need and is not yet in folder/glyphs_sweep.json (see the module's
    docstring); ``share``: take turns with other processes run alike. Returns the file's contents."""
    folder = Path(folder)
    path, npz = folder / "glyphs_sweep.json", folder / "glyphs_sweep.npz"
    settings = dict(scan_ws=SCAN_WS, scan_ws_more=SCAN_WS_MORE, scan_n=SCAN_N, seeds=SEEDS, seeds_n=SEEDS_N, steps=STEPS,
                    sampler="EDM Heun, sigma 80 -> 0.002, rho 7", reference="test fonts")

    def current():
        state = json.loads(path.read_text()) if path.exists() else {"rows": []}
        state.update(command="python -m course.glyph_sweep data", settings=settings)
        return state

    def stored_arrays():
        if not npz.exists():
            return {}
        with np.load(npz) as z:
            return {k: z[k] for k in z.files}

    with _locked(folder):
        if force:
            for p in (path, npz):
                p.unlink(missing_ok=True)
    data = glyphs.load()
    feature_net = glyph_models.load_model("glyphs_features", folder)
    D = glyph_models.load_model("glyphs_main", folder)
    guide = glyph_models.load_model("glyphs_guide", folder)
    clf = glyph_models.load_model("glyphs_classifier", folder)
    make = {"unguided": lambda w: D, **glyph_models.guiders(D, guide, clf)}
    reference = digits.reference_of(feature_net, data["x_test"])

    def matches(r, stage, guider, w, seed, n, extra):
        return (r["stage"], r["guider"], r["w"], r["seed"], r["n"]) == (stage, guider, w, seed, n) and \
            all(r.get(k) == v for k, v in extra.items())

    claims_path = folder / ".glyphs_sweep.claims.json"

    def claim(task):
        """With ``share``: True if this process may measure ``task`` (no live process has claimed it; now it has)."""
        import os

        with _locked(folder):
            claims = json.loads(claims_path.read_text()) if claims_path.exists() else {}
            claims = {k: pid for k, pid in claims.items() if _alive(pid)}
            if task in claims and claims[task] != os.getpid():
                return False
            claims[task] = os.getpid()
            checkpoints.atomic_write(claims_path, lambda tmp: Path(tmp).write_text(json.dumps(claims)))
            return True

    def measure(stage, guider, w, seed, n, denoiser=None, keep=False, **extra):
        if any(matches(r, stage, guider, w, seed, n, extra) for r in current()["rows"]):
            return
        if share and not claim(json.dumps([stage, guider, w, seed, n, extra], sort_keys=True)):
            return  # another process is measuring it
        t0 = time.perf_counter()
        x, y = generate(denoiser or make[guider](w), n, seed)
        f, pred = features_of(x, feature_net)
        row = dict(stage=stage, guider=guider, w=w, seed=seed, n=n, **extra, **digits.scores(f, pred, y, reference),
                   seconds=round(time.perf_counter() - t0, 1), threads=torch.get_num_threads())
        with _locked(folder):  # read, add, write: the other processes' rows are kept
            state = current()
            state["rows"].append(row)
            checkpoints.atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(state, indent=1)))
            if keep:
                arrays = stored_arrays()
                arrays[f"{key_of(guider, w)}/features"] = f.numpy().astype(np.float16)
                arrays[f"{key_of(guider, w)}/predicted"] = pred.numpy().astype(np.uint8)
                checkpoints.atomic_write(npz, lambda tmp: _savez(tmp, arrays))
        log(" ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))

    while "scan" in stages:
        measure("scan", "unguided", 1.0, 0, SCAN_N, keep=True)
        for name in glyph_models.GUIDERS:
            for w in scan_ws_of(name):
                measure("scan", name, w, 0, SCAN_N, keep=True)
        try:
            best_w(current()["rows"])
            break
        except RuntimeError:  # sharing: others are measuring the last scan sets (or died: then we take them over)
            time.sleep(10)
    if "seeds" in stages or "ablation" in stages:
        best = best_w(current()["rows"])
        for seed in SEEDS:
            if "seeds" in stages:
                measure("seeds", "unguided", 1.0, seed, SEEDS_N)
                for name, w in best.items():
                    measure("seeds", name, w, seed, SEEDS_N)
    if "ablation" in stages:
        w = best["autoguidance"]
        for label, name in ABLATION.items():
            if not (folder / f"{name}.safetensors").exists():
                log(f"ablation '{label}' NOT measured: {name} is not trained "
                    f"(python -m course.glyph_models {folder} --only {name}; then run this again)")
                continue
            g = glyph_models.load_model(name, folder)
            measure("ablation", "autoguidance", w, 0, SCAN_N, denoiser=glyph_models.guiders(D, g)["autoguidance"](w),
                    guide=label, guide_parameters=sum(p.numel() for p in g.parameters()),
                    guide_steps=glyph_models.load_curve(folder)["best_step"] // glyph_models.SPECS[name][1]["guide"])
    with _locked(folder):  # the file names this code's settings, even if a process of older settings wrote last
        state = current()
        if path.exists() and json.loads(path.read_text()).get("settings") != json.loads(json.dumps(settings)):
            checkpoints.atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(state, indent=1)))
    return state


def scan_ws_of(name, scan_ws=None, more=None):
    """The scales the scan tries for guider ``name``: ``scan_ws`` (every guider's; default
    :data:`SCAN_WS`) and ``more[name]`` (default :data:`SCAN_WS_MORE`), sorted."""
    scan_ws = SCAN_WS if scan_ws is None else scan_ws
    more = SCAN_WS_MORE if more is None else more
    return tuple(sorted({float(w) for w in scan_ws} | {float(w) for w in more.get(name, ())}))


def best_w(rows, scan_ws=None, more=None):
    """{guider: the w of its lowest scan FD}; an error if the scan (of :func:`scan_ws_of` with
    ``scan_ws`` and ``more``; a file's own are in its ``settings``) is incomplete."""
    scan = [r for r in rows if r["stage"] == "scan"]
    best = {}
    for name in glyph_models.GUIDERS:
        ws = scan_ws_of(name, scan_ws, more)
        mine = [r for r in scan if r["guider"] == name and r["w"] in ws]
        if {r["w"] for r in mine} != set(ws):
            raise RuntimeError(f"the scan of {name} is incomplete ({len(mine)} of {len(ws)} scales): "
                               "run python -m course.glyph_sweep data --stages scan first")
        best[name] = min(mine, key=lambda r: r["fd"])["w"]
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m course.glyph_sweep", description=__doc__.splitlines()[0])
    ap.add_argument("folder", help="where the glyph models are and glyphs_sweep.json / .npz go (data/)")
    ap.add_argument("--stages", nargs="*", default=["scan", "seeds", "ablation"], choices=["scan", "seeds", "ablation"])
    ap.add_argument("--force", action="store_true", help="start again (otherwise measured sample sets are kept)")
    ap.add_argument("--share", choices=["auto"], help="auto: share the work with other processes run alike")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    run(args.folder, args.stages, args.force, share=args.share == "auto")
    print(f"done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
