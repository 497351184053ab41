"""The models of the 32x32 glyph rung (:mod:`course.glyphs`), trained with the digits' recipe.

* Denoisers: EDM2's UNet (:class:`~course.imagenet.edm2.EDM2Denoiser`, the ImageNet-64 network
  family) at 32x32, one channel, 26 classes, self-attention at 8x8 (blocks ``unet.enc.8x8_block0``
  ... for PAG). ``glyphs_main`` trains until its FD stops improving; ``glyphs_guide`` is the
  autoguidance guide: about a quarter of the parameters (half the channels) and 1/8 of the main
  model's steps, as the paper's XS guide of an S model at 1/8-1/16 of its training.
* :class:`GlyphClassifier` - noisy (``noisy=True``, FiLM on ln sigma; the classifier of CG) or clean
  (the feature network of FD / precision / recall: its 128-d penultimate layer, the role
  Inception-v3 plays for FID). The clean one's accuracy on the *test fonts* is printed at training.

``python -m course.glyph_models data`` trains every model and saves it to data/ (data/README.md).
"""
import json
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from . import checkpoints, digits, glyphs, training
from .conversions import as_labels, check_input
from .imagenet.edm2 import EDM2Denoiser
from .mlp import FourierEmbedding

SIGMA_DATA = 0.67  # the std of the scaled glyphs (data/glyphs.npz, train split: 0.668)
NUM_CLASSES = len(glyphs.LETTERS)


def denoiser(model_channels=16, num_blocks=1):
    """EDM2's UNet for 32x32 grey glyphs: levels 32, 16, 8 (channels x1, x2, x2), self-attention at
    8x8 in heads of 16 channels. At 16 channels it has 0.30M parameters and one training step of
    batch 128 takes about 1.2 s on 2 CPU cores (measured); a forward pass costs about 5 ms per image,
    so 1000 samples of 32 network evaluations take minutes - the rung's budget."""
    return EDM2Denoiser(img_resolution=32, img_channels=1, label_dim=NUM_CLASSES, model_channels=model_channels,
                        channel_mult=[1, 2, 2], num_blocks=num_blocks, attn_resolutions=[8], channels_per_head=16,
                        sigma_data=SIGMA_DATA)


class GlyphClassifier(nn.Module):
    """Logits [N, 26] of 32x32 glyphs x [N, 1, 32, 32]: three conv stages (32 -> 16 -> 8 -> 4 pixels),
    then a 128-d feature layer and the class layer. ``noisy=True``: forward(x, sigma) on EDM-scaled
    input x / sqrt(sigma^2 + sigma_data^2), each stage's features scaled and shifted by an embedding
    of ln(sigma) (FiLM) - the noise-aware classifier of CG; ``noisy=False``: forward(x)."""

    def __init__(self, width=32, num_classes=NUM_CLASSES, noisy=False):
        super().__init__()
        self.config = dict(width=width, num_classes=num_classes, noisy=noisy)
        widths = [width, 2 * width, 4 * width]
        self.convs = nn.ModuleList()
        c_in = 1
        for c in widths:
            self.convs.append(nn.ModuleList([nn.Conv2d(c_in, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)]))
            c_in = c
        self.film = None
        if noisy:
            self.emb = nn.Sequential(FourierEmbedding(16, 1.0), nn.Linear(32, 4 * width), nn.SiLU())
            self.film = nn.ModuleList([nn.Linear(4 * width, 2 * c) for c in widths])
        self.feature = nn.Sequential(nn.Flatten(), nn.Linear(widths[-1] * 16, 128), nn.SiLU())
        self.head = nn.Linear(128, num_classes)

    def features(self, x, sigma=None):
        """The 128-d penultimate features [N, 128]."""
        check_input(self, x)
        if self.film is not None:
            if sigma is None:
                raise ValueError("this classifier is noise-aware: pass sigma (0 is not allowed; use a small value for clean images)")
            s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])
            e = self.emb(s.log() / 4)
            x = x / (s.reshape(-1, 1, 1, 1) ** 2 + SIGMA_DATA**2).sqrt()
        h = x
        for i, (a, b) in enumerate(self.convs):
            h = b(nn.functional.silu(a(h)))
            if self.film is not None:
                scale, shift = self.film[i](e)[..., None, None].chunk(2, dim=1)
                h = h * (1 + scale) + shift
            h = nn.functional.avg_pool2d(nn.functional.silu(h), 2)
        return self.feature(h)

    def forward(self, x, sigma=None):
        return self.head(self.features(x, sigma))

    def log_prob(self, x, sigma, y):
        """log p(y[i] | x[i]; sigma): [N] (the classifier interface of classifier guidance)."""
        logp = torch.log_softmax(self.forward(x, sigma), dim=1)
        return logp.gather(1, as_labels(y).reshape(-1, 1).expand(x.shape[0], 1)).squeeze(1)


CHECKPOINT_CLASSES = {"GlyphClassifier": GlyphClassifier}

# The recipe: the digits' (EDM2's, scaled down) - EDM loss, Adam lr 1e-2 / sqrt(max(step / 512, 1)),
# batch 128, label dropout 0.15, power-function EMA with relative std 0.05.
DENOISER = dict(batch=128, lr=1e-2, label_dropout=0.15, ema_std=0.05)
# Early stopping of the main model: every 500 steps 520 unguided samples (20 of each letter, 16 Heun
# steps) are scored against the test fonts; stop after 2 evaluations without a lower FD, or at
# 2500 steps (about an hour of 2 CPU cores, evaluations included: the budget of this rung).
MAIN_CURVE = dict(every=500, patience=2, max_steps=2500, samples=520, sampler_steps=16, seed=0)
GUIDE_FRACTION = 8  # the guide trains for 1/8 of the main model's best step (data/glyphs_main_curve.json)

SPECS = {
    "glyphs_features": (lambda: GlyphClassifier(16), dict(kind="clean", steps=3000)),
    "glyphs_main": (lambda: denoiser(16), dict(kind="denoiser", steps=MAIN_CURVE["max_steps"], curve=True)),
    "glyphs_guide": (lambda: denoiser(8), dict(kind="denoiser", guide=GUIDE_FRACTION)),
    "glyphs_classifier": (lambda: GlyphClassifier(16, noisy=True), dict(kind="noisy", steps=3000)),
    # The guide-degradation ablation (lesson 6b): one degradation at a time. Smaller only: the
    # guide's size, trained as long as the main model; shorter only: the main model's size, 1/8
    # of its steps.
    "glyphs_guide_smaller": (lambda: denoiser(8), dict(kind="denoiser", guide=1)),
    "glyphs_guide_shorter": (lambda: denoiser(16), dict(kind="denoiser", guide=GUIDE_FRACTION)),
}


def train_classifier(model, x, y, steps, batch=128, lr=2e-3, noisy=True, seed=0, progress=True):
    """Cross-entropy training with Adam; ``noisy``: on x + sigma n with ln sigma ~ N(-1.2, 1.5^2);
    clean: with random +-2 pixel shifts (robust features for unseen fonts)."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: 1 / max(it / 512, 1) ** 0.5)
    model.train()
    for _ in tqdm(range(steps), disable=not progress, desc="classifier", mininterval=5.0):
        idx = torch.randint(0, len(x), (batch,), generator=g)
        xb, yb = x[idx], y[idx]
        if noisy:
            sigma = (torch.randn(batch, generator=g) * 1.5 - 1.2).exp()
            logits = model(xb + sigma.reshape(-1, 1, 1, 1) * torch.randn(xb.shape, generator=g), sigma)
        else:
            shift = torch.randint(-2, 3, (2,), generator=g).tolist()
            logits = model(torch.roll(xb, shifts=shift, dims=(2, 3)))
        loss = nn.functional.cross_entropy(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def accuracy(model, x, y, sigma=None, batch=1000):
    """Fraction of x classified as y."""
    hits = 0
    for i in range(0, len(x), batch):
        logits = model(x[i:i + batch]) if sigma is None else model(x[i:i + batch], sigma)
        hits += (logits.argmax(1) == y[i:i + batch]).sum().item()
    return hits / len(x)


def unguided_scores(D, feature_net, n=1000, steps=16, seed=0, data=None, reference=None):
    """FD / precision / recall / accuracy of ``n`` conditional samples of D (the 26 letters in
    turn, no guidance) against the test fonts (``reference``: :func:`course.digits.reference_of`
    of them, computed once)."""
    from . import samplers

    data = data or glyphs.load()
    labels = torch.arange(NUM_CLASSES).repeat(n // NUM_CLASSES + 1)[:n]
    with torch.no_grad():
        x = samplers.sample(D, len(labels), (1, 32, 32), y=labels, steps=steps, sigma_max=80.0, seed=seed)
    return digits.measure(x, labels, feature_net, data["x_test"], reference=reference)


GUIDERS = ("cfg", "autoguidance", "pag", "cg")


def guiders(D, D_guide=None, classifier=None):
    """The four guiders of lessons 2-5 on the glyph models, each a function of w -> a denoiser:
    CFG (D's labelled and label-dropped outputs), autoguidance (D against ``D_guide``), PAG (identity
    attention in every self-attention block of D) and CG (D without labels plus w sigma^2 times the
    noise-aware ``classifier``'s gradient: w = 1 is Bayes' rule, as CFG's w = 1 is the conditional
    model). w = 1 is the unguided conditional model for the first three."""
    from . import guiders as g

    made = {"cfg": lambda w: g.CFG(D, w), "pag": lambda w: g.PAG(D, D.attention_blocks(), w)}
    if D_guide is not None:
        made["autoguidance"] = lambda w: g.Autoguidance(D, D_guide, w)
    if classifier is not None:
        made["cg"] = lambda w: g.ClassifierGuidance(D, classifier.log_prob, w)
    return {name: made[name] for name in GUIDERS if name in made}


def train_one(name, steps=None, progress=True, curve_path=None, folder=None, curve=None):
    """Train the glyph model ``name`` of :data:`SPECS` (``steps`` overrides its length; ``curve``
    overrides :data:`MAIN_CURVE`'s entries; ``folder``: where the feature net and the curve are)."""
    make, spec = SPECS[name]
    model = make()
    data = glyphs.load()
    x, y = data["x_train"], data["y_train"]
    if spec["kind"] != "denoiser":
        model = train_classifier(model, x, y, spec["steps"] if steps is None else steps, noisy=spec["kind"] == "noisy",
                                 progress=progress)
        if spec["kind"] == "clean":
            print(f"{name}: accuracy {accuracy(model, data['x_test'], data['y_test']):.3f} on the test fonts, "
                  f"{accuracy(model, x, y):.3f} on the training fonts", flush=True)
        return model
    monitor = None
    if spec.get("guide"):  # a fraction of the main model's kept step
        steps = steps or max(1, load_curve(folder)["best_step"] // spec["guide"])
    stopping = {**MAIN_CURVE, **(curve or {})}
    if spec.get("curve") and steps is None:
        features = load_model("glyphs_features", folder)
        ref = digits.reference_of(features, data["x_test"])  # the test fonts' side of every evaluation, once
        scores = lambda model: unguided_scores(model, features, data=data, n=stopping["samples"],  # noqa: E731
                                               steps=stopping["sampler_steps"], seed=stopping["seed"], reference=ref)
        monitor = digits.LearningCurve(None, progress=progress, scores=scores, **stopping)
        steps = stopping["max_steps"]
    trained, _ = training.train(model, digits.batches(x, y), steps=spec.get("steps") if steps is None else steps, batch=DENOISER["batch"],
                                lr=DENOISER["lr"], label_dropout=DENOISER["label_dropout"], ema_std=DENOISER["ema_std"],
                                progress=progress, loss_kwargs=dict(sigma_data=SIGMA_DATA),
                                monitor=monitor, monitor_every=stopping["every"])
    if monitor is not None:
        trained.load_state_dict(monitor.best_state)
        if curve_path is not None:
            monitor.save(curve_path, DENOISER, stopping, f"python -m course.glyph_models data --only {name} --force",
                         "unguided conditional samples of the EMA, scored against the test fonts by glyphs_features")
    return trained


def load_model(name, folder=None):
    """A committed glyph model from data/ (or ``folder``)."""
    if name not in SPECS:
        raise ValueError(f"unknown glyph model {name!r}; known: {sorted(SPECS)}")
    return checkpoints.load(Path(folder or checkpoints.data_folder()) / f"{name}.safetensors")


def load_curve(folder=None):
    """The main model's learning curve: dict with ``rows`` (step, fd, precision, recall, accuracy,
    seconds), ``best_step`` and the recipe."""
    path = Path(folder or checkpoints.data_folder()) / "glyphs_main_curve.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; it is written by: python -m course.glyph_models data --only glyphs_main --force")
    return json.loads(path.read_text())


def main(argv=None):
    # curve=True: train_one receives curve_path (only the main model writes one)
    checkpoints.retrain_main("course.glyph_models", SPECS,
                             lambda name, curve_path: train_one(name, curve_path=curve_path, folder=curve_path.parent), argv, curve=True)


if __name__ == "__main__":
    main()
