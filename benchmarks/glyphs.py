"""Is the 32x32 glyph rung hard enough? (prints numbers only)

    python benchmarks/glyphs.py [--n 520] [--steps 16] [--seeds 0] [--ws 1.5 2 3]

With the committed models (python -m course.glyph_models data): the feature network's accuracy
on the test fonts; the real FD (training-font images against test-font images, the floor a
model that generalises perfectly to unseen fonts would reach); the unguided FD / precision /
recall / class accuracy of the main model; and the same for CFG, autoguidance, PAG and CG at each
w - all from the same noise, against the test fonts. Also the time per sample set.
"""
import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from course import digits, glyph_models, glyphs, metrics, samplers  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=520)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--seeds", type=int, nargs="*", default=[0])
    ap.add_argument("--ws", type=float, nargs="*", default=[1.5, 2.0, 3.0])
    ap.add_argument("--guiders", nargs="*", default=["cfg", "autoguidance", "pag", "cg"])
    args = ap.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.n} samples, {args.steps} Heun steps, seeds {args.seeds}")
    data = glyphs.load()
    feats = glyph_models.load_model("glyphs_features")
    print(f"feature net accuracy: test fonts {glyph_models.accuracy(feats, data['x_test'], data['y_test']):.3f}, "
          f"training fonts {glyph_models.accuracy(feats, data['x_train'], data['y_train']):.3f}")
    with torch.no_grad():
        f_train = feats.features(data["x_train"]).double()
        f_test = feats.features(data["x_test"]).double()
        real_fd = metrics.frechet_distance(*metrics.feature_statistics(f_train), *metrics.feature_statistics(f_test))
        g = torch.Generator().manual_seed(0)
        sub = torch.randperm(len(data["x_train"]), generator=g)[: args.n]
        ref = digits.reference_of(feats, data["x_test"])  # the test fonts' features and k-NN radii, once
        real_sub = digits.measure(data["x_train"][sub], data["y_train"][sub], feats, None, reference=ref)
    print(f"real FD, all training-font images vs all test-font images: {real_fd:.2f}")
    print(f"real, {args.n} training-font images as if samples: " + ", ".join(f"{k} {v:.3f}" for k, v in real_sub.items()))
    main_D = glyph_models.load_model("glyphs_main")
    guide = glyph_models.load_model("glyphs_guide")
    clf = glyph_models.load_model("glyphs_classifier") if "cg" in args.guiders else None
    make = {"unguided": lambda w: main_D, **glyph_models.guiders(main_D, guide, clf)}
    labels = torch.arange(glyph_models.NUM_CLASSES).repeat(args.n // glyph_models.NUM_CLASSES + 1)[: args.n]
    runs = [("unguided", 1.0)] + [(name, w) for w in args.ws for name in args.guiders]
    print(f"{'guider':>13} {'w':>4} {'seed':>4} {'FD':>7} {'prec':>6} {'recall':>6} {'acc':>6} {'seconds':>8}")
    for name, w in runs:
        for seed in args.seeds:
            t0 = time.perf_counter()
            with torch.no_grad():
                x = samplers.sample(make[name](w), len(labels), (1, 32, 32), y=labels, steps=args.steps, seed=seed)
            r = digits.measure(x, labels, feats, None, reference=ref)
            print(f"{name:>13} {w:4g} {seed:4d} {r['fd']:7.2f} {r['precision']:6.3f} {r['recall']:6.3f} {r['accuracy']:6.3f} "
                  f"{time.perf_counter() - t0:8.1f}", flush=True)


if __name__ == "__main__":
    main()
