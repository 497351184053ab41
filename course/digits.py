"""Real images on a laptop: scikit-learn's 8x8 digits (1,797 images, 10 classes, no download).

* :func:`load` - the images scaled to [-1, 1] (pixel / 8 - 1), shape [N, 1, 8, 8], with a fixed
  stratified train/test split.
* Models: the class-conditional denoiser is EDM2's UNet (:class:`~course.imagenet.edm2.EDM2Denoiser`)
  at a tiny configuration - the same network family as the ImageNet-64 rung, with
  self-attention at 4x4 (blocks named ``unet.enc.4x4_block0`` ...) for PAG; the guide is a
  smaller, shorter-trained copy; :class:`NoisyClassifier` is the noise-aware classifier for CG;
  :class:`FeatureNet` is a digits classifier trained on clean images whose penultimate layer is
  the feature space of the metrics (the role Inception-v3 plays for FID).
* :func:`measure` - Frechet distance and k-NN precision/recall in that feature space against the
  held-out test images, and the accuracy with which samples show the requested class.

``python -m course.digits data`` trains every model and saves it to data/ (see data/README.md).
"""
import json
import time
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from . import checkpoints, metrics, training
from .imagenet.edm2 import EDM2Denoiser
from .conversions import as_labels, check_input
from .mlp import FourierEmbedding


def load(test_fraction=0.25, seed=0):
    """(x_train, y_train, x_test, y_test): images [N, 1, 8, 8] float32 in [-1, 1], labels [N] long."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 8 - 1  # pixels 0..16 -> [-1, 1]
    y = torch.tensor(d.target, dtype=torch.long)
    idx_train, idx_test = train_test_split(range(len(y)), test_size=test_fraction, random_state=seed, stratify=d.target)
    return x[idx_train], y[idx_train], x[idx_test], y[idx_test]


SIGMA_DATA = 0.75  # the std of the scaled digits (measured: 0.75), used by the preconditioning and the loss


def denoiser(model_channels=32, num_blocks=1):
    """EDM2's UNet for 8x8 grey images, 10 classes, attention at 4x4 (heads of 16 channels)."""
    return EDM2Denoiser(img_resolution=8, img_channels=1, label_dim=10, model_channels=model_channels, channel_mult=[1, 2],
                        num_blocks=num_blocks, attn_resolutions=[4], channels_per_head=16, sigma_data=SIGMA_DATA)


class NoisyClassifier(nn.Module):
    """log p(y | x; sigma) for noisy 8x8 digits: a small CNN whose features are scaled and shifted
    by an embedding of ln(sigma) (FiLM), on EDM-scaled input x / sqrt(sigma^2 + 0.25)."""

    def __init__(self, width=32, num_classes=10):
        super().__init__()
        self.config = dict(width=width, num_classes=num_classes)
        self.emb = nn.Sequential(FourierEmbedding(16, 1.0), nn.Linear(32, 4 * width), nn.SiLU())
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.film1, self.film2 = nn.Linear(4 * width, 2 * width), nn.Linear(4 * width, 4 * width)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 16, 128), nn.SiLU(), nn.Linear(128, num_classes))

    def forward(self, x, sigma):
        check_input(self, x)
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])
        e = self.emb(s.log() / 4)
        h = self.conv1(x / (s.reshape(-1, 1, 1, 1) ** 2 + 0.25).sqrt())
        scale, shift = self.film1(e)[..., None, None].chunk(2, dim=1)
        h = torch.nn.functional.silu(h * (1 + scale) + shift)
        h = torch.nn.functional.avg_pool2d(self.conv2(h), 2)
        scale, shift = self.film2(e)[..., None, None].chunk(2, dim=1)
        return self.head(torch.nn.functional.silu(h * (1 + scale) + shift))

    def log_prob(self, x, sigma, y):
        logp = torch.log_softmax(self.forward(x, sigma), dim=1)
        return logp.gather(1, as_labels(y).reshape(-1, 1).expand(x.shape[0], 1)).squeeze(1)


class FeatureNet(nn.Module):
    """A clean-image digits classifier; ``features`` (64-d, before the last layer) is the feature space."""

    def __init__(self, width=32, num_classes=10):
        super().__init__()
        self.config = dict(width=width, num_classes=num_classes)
        self.body = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.SiLU(), nn.Conv2d(width, 2 * width, 3, padding=1), nn.SiLU(),
                                  nn.AvgPool2d(2), nn.Flatten(), nn.Linear(2 * width * 16, 64), nn.SiLU())
        self.head = nn.Linear(64, num_classes)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.body(x))


CHECKPOINT_CLASSES = {"EDM2Denoiser": EDM2Denoiser, "NoisyClassifier": NoisyClassifier, "FeatureNet": FeatureNet}


def batches(x, y):
    """A training source: draw(n, generator) -> random (images, labels) with replacement."""
    def draw(n, generator=None):
        idx = torch.randint(0, len(x), (n,), generator=generator)
        return x[idx], y[idx]
    return draw


def train_classifier(model, x, y, steps, batch=128, lr=2e-3, noisy=True, seed=0, progress=True):
    """Cross-entropy training; ``noisy``: on x + sigma n with ln sigma ~ N(-1.2, 1.5^2) (noise-aware)."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in tqdm(range(steps), disable=not progress, desc="classifier", mininterval=1.0):
        idx = torch.randint(0, len(x), (batch,), generator=g)
        xb, yb = x[idx], y[idx]
        if noisy:
            sigma = (torch.randn(batch, generator=g) * 1.5 - 1.2).exp()
            logits = model(xb + sigma.reshape(-1, 1, 1, 1) * torch.randn(xb.shape, generator=g), sigma)
        else:
            shift = torch.randint(-1, 2, (2,), generator=g).tolist()  # +-1 pixel shifts: a little robustness
            logits = model(torch.roll(xb, shifts=shift, dims=(2, 3)))
        loss = nn.functional.cross_entropy(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


# The denoisers' recipe (EDM2's, scaled down): EDM loss, Adam lr 1e-2 / sqrt(max(step / 512, 1)),
# batch 128, label dropout 0.15, power-function EMA with relative std 0.05 (EDM2's ImageNet-64
# models use 0.045-0.105). The main model trains until its FD stops improving (see MAIN_CURVE);
# the guide is the same recipe at 1/4 of the parameters and 1/8 of the main model's steps, as the
# autoguidance paper's guides are (1/4-1/2 capacity, 1/8-1/16 training).
DENOISER = dict(batch=128, lr=1e-2, label_dropout=0.15, ema_std=0.05)
# Early stopping of the main model: every 1000 steps, 1000 unguided samples (16 Heun steps, seed 0)
# are scored against the test images; training stops after 3 evaluations without a better FD (or
# at 16000 steps) and keeps the EMA of the best one. (The test images choose the stopping point:
# with 450 of them there is no third split to spare; the curve says so.)
MAIN_CURVE = dict(every=1000, patience=3, max_steps=16000, samples=1000, sampler_steps=16, seed=0)
GUIDE_STEPS = 375  # 1/8 of the committed main model's 3000 steps (data/digits_main_curve.json: its lowest FD)

SPECS = {
    "digits_main": (lambda: denoiser(32, 1), dict(kind="denoiser", steps=MAIN_CURVE["max_steps"], curve=True)),
    "digits_guide": (lambda: denoiser(16, 1), dict(kind="denoiser", steps=GUIDE_STEPS)),
    "digits_classifier": (lambda: NoisyClassifier(), dict(kind="noisy", steps=1500)),
    "digits_features": (lambda: FeatureNet(), dict(kind="clean", steps=1500)),
}


def unguided_scores(D, feature_net, n=1000, steps=16, seed=0):
    """FD / precision / recall / accuracy of ``n`` conditional samples of D (classes 0..9 in turn, no guidance)."""
    from . import samplers

    _, _, x_test, _ = load()
    labels = torch.arange(10).repeat(n // 10)
    with torch.no_grad():
        x = samplers.sample(D, len(labels), (1, 8, 8), y=labels, steps=steps, sigma_max=80.0, seed=seed)
    return measure(x, labels, feature_net, x_test)


class LearningCurve:
    """The monitor of :func:`course.training.train` that early-stops the main model: scores the EMA
    every ``every`` steps (:func:`unguided_scores`, or ``scores(model)`` -> dict with fd, precision,
    recall, accuracy), keeps a copy of the best-FD one, and says stop after ``patience``
    evaluations without a lower FD. ``rows``: one dict per evaluation."""

    def __init__(self, feature_net, patience=3, samples=1000, sampler_steps=16, seed=0, progress=True, scores=None, **_):
        self.feature_net, self.patience, self.progress, self.scores = feature_net, patience, progress, scores
        self.kw = dict(n=samples, steps=sampler_steps, seed=seed)
        self.rows, self.best, self.best_state = [], None, None
        self.t0 = time.perf_counter()

    def save(self, path, recipe, stopping, command, note):
        """Write the curve (rows, best step, the recipe and stopping rule, the command that made it) as JSON, atomically."""
        curve = dict(rows=self.rows, best_step=self.best["step"], recipe=recipe, stopping=stopping, command=command, note=note)
        checkpoints.atomic_write(Path(path), lambda tmp: Path(tmp).write_text(json.dumps(curve, indent=1)))

    def __call__(self, step, model):
        scored = self.scores(model) if self.scores else unguided_scores(model, self.feature_net, **self.kw)
        row = dict(step=step, **scored, seconds=round(time.perf_counter() - self.t0, 1))
        self.rows.append(row)
        if self.best is None or row["fd"] < self.best["fd"]:
            self.best, self.best_state = row, {k: v.clone() for k, v in model.state_dict().items()}
        if self.progress:
            print(f"step {step}: FD {row['fd']:.1f}, precision {row['precision']:.3f}, recall {row['recall']:.3f}, "
                  f"accuracy {row['accuracy']:.3f} ({row['seconds']:.0f} s; best FD at step {self.best['step']})", flush=True)
        return len(self.rows) - 1 - self.rows.index(self.best) >= self.patience  # `patience` evaluations since the best


def train_one(name, steps=None, progress=True, curve_path=None):
    """Train the digits model ``name`` of :data:`SPECS` (``steps`` overrides its length). The main
    model is early-stopped on FD (:data:`MAIN_CURVE`) unless ``steps`` is given; its learning curve
    is written to ``curve_path`` (JSON) if given."""
    make, spec = SPECS[name]
    model = make()
    x, y, _, _ = load()
    if spec["kind"] == "denoiser":
        monitor = None
        if spec.get("curve") and steps is None:
            monitor = LearningCurve(load_model("digits_features"), progress=progress, **MAIN_CURVE)
        trained, _ = training.train(model, batches(x, y), steps=spec["steps"] if steps is None else steps, batch=DENOISER["batch"],
                                    lr=DENOISER["lr"], label_dropout=DENOISER["label_dropout"], ema_std=DENOISER["ema_std"],
                                    progress=progress, loss_kwargs=dict(sigma_data=SIGMA_DATA),
                                    monitor=monitor, monitor_every=MAIN_CURVE["every"])
        if monitor is not None:
            trained.load_state_dict(monitor.best_state)
            if curve_path is not None:
                monitor.save(curve_path, DENOISER, MAIN_CURVE, f"python -m course.digits data --only {name} --force",
                             "unguided conditional samples of the EMA, scored against the test split by digits_features")
        return trained
    return train_classifier(model, x, y, spec["steps"] if steps is None else steps, noisy=spec["kind"] == "noisy", progress=progress)


def load_model(name, folder=None):
    """A committed digits model from data/ (or ``folder``)."""
    if name not in SPECS:
        raise ValueError(f"unknown digits model {name!r}; known: {sorted(SPECS)}")
    return checkpoints.load(Path(folder or checkpoints.data_folder()) / f"{name}.safetensors")


@torch.no_grad()
def features_of(feature_net, x, batch=1024):
    """feature_net.features(x) [N, F], computed ``batch`` images at a time: the same numbers, and the
    memory of one batch (31,720 glyphs at once held about 2 GB per convolution layer)."""
    return torch.cat([feature_net.features(x[i:i + batch]) for i in range(0, len(x), batch)])


def reference_of(feature_net, x_test, k=3):
    """What :func:`measure` computes of the test images, computed once: their features, the
    features' mean and covariance, and their k-NN radii (pass it as ``measure(..., reference=)``)."""
    f_ref = features_of(feature_net, x_test).double()
    return dict(features=f_ref, stats=metrics.feature_statistics(f_ref), radius=metrics.knn_radius(f_ref, k), k=k)


@torch.no_grad()
def measure(samples, requested, feature_net, x_test, k=3, reference=None):
    """Scores of generated images [N, 1, H, W] made for classes ``requested`` [N], against the
    held-out test images: Frechet distance of features (FD), k-NN precision and recall, and the
    fraction the feature net classifies as requested (accuracy). ``reference``: the test images'
    part, precomputed by :func:`reference_of` (then ``x_test`` is not used)."""
    samples = samples.clamp(-1, 1)
    ref = reference if reference is not None else reference_of(feature_net, x_test, k)
    predicted = feature_net(samples).argmax(1)
    return scores(features_of(feature_net, samples), predicted, requested, ref)


def scores(features, predicted, requested, reference):
    """What :func:`measure` returns, from the samples' features [N, F] and the feature net's
    predicted classes [N]: FD, k-NN precision and recall against ``reference`` (:func:`reference_of`)
    and the fraction predicted as requested."""
    f = features.double()
    fd = metrics.frechet_distance(*metrics.feature_statistics(f), *reference["stats"])
    precision, recall = metrics.precision_recall(reference["features"], f, k=reference["k"], real_radius=reference["radius"])
    return dict(fd=fd, precision=precision, recall=recall, accuracy=(predicted == requested).double().mean().item())


# What a stored measurement of digit samples depends on (course.measured): the committed models and
# the code that samples, guides and scores them (paths relative to the package).
MEASURED_SOURCES = ("samplers.py", "guiders.py", "alternatives.py", "schedules.py", "attention.py", "conversions.py",
                    "digits.py", "metrics.py", "imagenet/edm2.py")


def measurement_store(folder=None, record=None):
    """The :class:`course.measured.Store` of digit measurements, ``data/digits_measured.json``: the
    scores of sample sets drawn from the committed models, under a fingerprint of those models and
    of :data:`MEASURED_SOURCES`, so a retrained model or changed sampler is measured again, live."""
    from . import measured

    folder = Path(folder or checkpoints.data_folder())
    package = Path(__file__).resolve().parent
    files = [folder / f"{name}.safetensors" for name in sorted(SPECS)] + [package / s for s in MEASURED_SOURCES]
    return measured.Store(folder / "digits_measured.json", measured.fingerprint(*files), record=record)


def load_curve(folder=None):
    """The main model's learning curve (written when it was trained): dict with ``rows`` (step, fd,
    precision, recall, accuracy, seconds), ``best_step`` and the recipe."""
    path = Path(folder or checkpoints.data_folder()) / "digits_main_curve.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; it is written by: python -m course.digits data --only digits_main --force")
    return json.loads(path.read_text())


def main(argv=None):
    checkpoints.retrain_main("course.digits", SPECS, train_one, argv, curve=True)


if __name__ == "__main__":
    main()
