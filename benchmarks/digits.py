"""Benchmarks of the digits rung on this CPU (prints numbers only).

    python benchmarks/digits.py

Training throughput of the main UNet (images per second at batch 128), and guided sampling time
per image (32 Heun steps) for CFG and PAG with the branches batched into one call against
separate calls, using the committed checkpoint.
"""
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from course import digits, guiders, samplers, training  # noqa: E402


def main():
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    x, y, _, _ = digits.load()
    model = digits.denoiser(32, 1)
    t = time.perf_counter()
    training.train(model, digits.batches(x, y), steps=50, batch=128, label_dropout=0.15, progress=False,
                   loss_kwargs=dict(sigma_data=digits.SIGMA_DATA))
    dt = time.perf_counter() - t
    print(f"training the main UNet: {50 * 128 / dt:.0f} images/s ({dt / 50 * 1000:.0f} ms per step of 128)")
    D = digits.load_model("digits_main")
    n = 200
    labels = torch.arange(10).repeat(n // 10)
    for name, make in [("CFG", lambda b: guiders.CFG(D, 2.0, batched=b)), ("PAG", lambda b: guiders.PAG(D, D.attention_blocks(), 2.0, batched=b))]:
        for batched in (True, False):
            with torch.no_grad():
                samplers.sample(make(batched), 20, (1, 8, 8), y=labels[:20], steps=4)  # warm-up
                t = time.perf_counter()
                samplers.sample(make(batched), n, (1, 8, 8), y=labels, steps=32)
                dt = time.perf_counter() - t
            print(f"{name}, {'batched' if batched else 'separate'}: {dt / n * 1000:.1f} ms per image ({n} images, 32 Heun steps)")
    with torch.no_grad():
        t = time.perf_counter()
        samplers.sample(D, n, (1, 8, 8), y=labels, steps=32)
        print(f"unguided: {(time.perf_counter() - t) / n * 1000:.1f} ms per image")


if __name__ == "__main__":
    main()
