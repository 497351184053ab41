"""Images per second of ``course.generate`` with 1 and 2 processes (torchrun, gloo) on the tiny
presets, printed side by side (prints numbers only).

    python benchmarks/generate.py [--seeds 0-15] [--steps 8] [--presets adm-icg,edm2-s-autoguidance-fid]

Each configuration runs in fresh processes into a fresh folder: one process with torch's default
thread count, one process with one thread, and two processes with one thread each (what torchrun
gives each worker). "gen img/s" is the command's own figure (the generation loop, from the
metrics JSON); "wall" includes starting Python, importing torch and forming the process group.
On a GPU machine, ``benchmarks/gpu_check.py`` times the real networks.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(preset, seeds, steps, batch, procs, threads):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        args = ["-m", "course.generate", preset, "--tiny", "--seeds", seeds, "--steps", str(steps), "--batch", str(batch),
                "--out", str(out)]
        cmd = [sys.executable, *args] if procs == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                           f"--nproc_per_node={procs}", *args]
        env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
        t = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        wall = time.perf_counter() - t
        if done.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
        metrics = json.loads((out / "metrics.json").read_text())
        return metrics["images_per_second"], metrics["n"] / wall, metrics["n"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0-15")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--presets", default="adm-icg,edm2-s-autoguidance-fid")
    args = ap.parse_args()
    print(f"{os.cpu_count()} CPUs; tiny random networks at 64x64, seeds {args.seeds}, {args.steps} Heun steps, batch {args.batch}")
    print(f"{'preset':28s} {'1 process (default threads)':>30s} {'1 process x 1 thread':>24s} {'2 processes x 1 thread':>24s}")
    for preset in args.presets.split(","):
        cells = []
        for procs, threads in ((1, None), (1, 1), (2, 1)):
            gen, wall, n = run(preset, args.seeds, args.steps, args.batch, procs, threads)
            cells.append(f"{gen:6.2f} gen / {wall:5.2f} wall")
        print(f"{preset:28s} {cells[0]:>30s} {cells[1]:>24s} {cells[2]:>24s}   (img/s)")


if __name__ == "__main__":
    main()
