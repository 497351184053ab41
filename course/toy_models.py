"""The learned models of the toy guidance lessons (2-D), beyond the plain MLP denoiser.

* :class:`MLPClassifier` - a noise-aware classifier log p(y | x; sigma) for classifier guidance.
* :class:`AttentionDenoiser` - a tiny transformer denoiser for PAG: x is lifted into tokens, one
  per coordinate plus one that carries sigma and the class, and a coordinate's prediction leaves
  through its own token. Self-attention is therefore the *only* path by which one coordinate
  learns about the others; replacing the attention map by the identity (PAG) leaves each
  coordinate to be denoised on its own - the model keeps "appearance" and loses "structure".

:func:`train_classifier` trains the classifier; ``python -m course.toy_models DIR`` trains and
saves every committed toy checkpoint (see data/README.md).
"""
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from . import checkpoints, mlp, presets, training
from .attention import SelfAttention
from .conversions import as_labels, check_input
from .mlp import FourierEmbedding


class MLPClassifier(nn.Module):
    """Noise-aware classifier: logits [N, C] of p(y | x; sigma) for x [N, dim] at noise sigma."""

    def __init__(self, dim=2, width=64, depth=3, num_classes=2, sigma_data=0.5):
        super().__init__()
        self.config = dict(dim=dim, width=width, depth=depth, num_classes=num_classes, sigma_data=sigma_data)
        self.sigma_data = sigma_data
        self.net = mlp.Backbone(dim, width, depth, 0, noise_scale=1.0, out_dim=num_classes)

    def forward(self, x, sigma):
        check_input(self, x)
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0]).reshape(-1, 1)
        return self.net(x / (s**2 + self.sigma_data**2).sqrt(), s.log() / 4)  # EDM's c_in and c_noise

    def log_prob(self, x, sigma, y):
        """log p(y[i] | x[i]; sigma): [N] (the classifier interface of classifier guidance)."""
        logp = torch.log_softmax(self.forward(x, sigma), dim=1)
        return logp.gather(1, as_labels(y).reshape(-1, 1).expand(x.shape[0], 1)).squeeze(1)


def noise_aware_loss(clf, x0, y, generator=None, P_mean=-1.5, P_std=1.8):
    """Cross-entropy of clf on noisy copies x0 + sigma n of clean samples, one sigma per row with
    ln sigma ~ N(P_mean, P_std^2) (wide: the classifier must be right at every noise level the
    sampler visits). clf(x [N, d], sigma [N]) -> logits [N, C]; x0 [N, d]; y [N]. Returns a scalar."""
    n = x0.shape[0]
    sigma = (torch.randn(n, generator=generator) * P_std + P_mean).exp()
    x = x0 + sigma.unsqueeze(1) * torch.randn(x0.shape, generator=generator)  # the forward process, per row
    return nn.functional.cross_entropy(clf(x, sigma), y)


def train_classifier(clf, gm, steps=3000, batch=1024, lr=3e-3, seed=0, progress=True, loss=noise_aware_loss):
    """Train clf on samples of the mixture gm with ``loss(clf, x0, y, generator)`` (by default the
    noise-aware cross-entropy above; Exercise 2.2 writes it). Returns the list of losses."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: 1 / max(it / 512, 1) ** 0.5)
    losses = []
    clf.train()
    for _ in tqdm(range(steps), disable=not progress, desc="classifier", mininterval=1.0):
        x0, k = gm.sample(batch, generator=g, return_components=True)
        value = loss(clf, x0, gm.labels[k], g)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        sched.step()
        losses.append(value.item())
    clf.eval()
    return losses


class Block(nn.Module):
    """Transformer block: x + SelfAttention, then x + MLP."""

    def __init__(self, width, heads):
        super().__init__()
        self.attn = SelfAttention(width, heads)
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.SiLU(), nn.Linear(2 * width, width))

    def forward(self, h):
        h = self.attn(h)
        return h + self.mlp(self.norm(h))


class AttentionNet(nn.Module):
    """F(x, c_noise, y): tokens [coord_1, ..., coord_d, context]; output coordinate i from token i."""

    def __init__(self, dim, width, depth, heads, num_classes):
        super().__init__()
        self.dim, self.num_classes = dim, num_classes
        self.value = nn.Sequential(FourierEmbedding(16, 2.0, seed=1), nn.Linear(32, width))  # a coordinate's value
        self.position = nn.Parameter(torch.randn(dim + 1, width) * 0.5)  # which coordinate (or context)
        self.noise = nn.Sequential(FourierEmbedding(16, 1.0), nn.Linear(32, width))
        self.label = nn.Embedding(num_classes + 1, width) if num_classes else None
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 1))

    def forward(self, x, c_noise, y=None):
        N, d = x.shape
        coords = self.value(x.reshape(-1)).reshape(N, d, -1)
        noise = self.noise(c_noise)
        context = noise
        if self.label is not None:
            y = torch.full((N,), self.num_classes, dtype=torch.long) if y is None else as_labels(y).reshape(-1).expand(N)
            context = context + self.label(torch.where(y < 0, self.num_classes, y))
        # sigma reaches every token (a coordinate needs to know how noisy it is); y only the context token
        h = torch.cat([coords + noise.unsqueeze(1), context.unsqueeze(1)], dim=1) + self.position
        for block in self.blocks:
            h = block(h)
        return self.out(h[:, :d]).squeeze(-1)


class AttentionDenoiser(nn.Module):
    """D(x, sigma, y) with EDM preconditioning around :class:`AttentionNet`.
    Its attention layers are named ``net.blocks.0.attn``, ``net.blocks.1.attn``, ..."""

    def __init__(self, dim=2, width=64, depth=2, heads=2, num_classes=0, sigma_data=0.5):
        super().__init__()
        self.config = dict(dim=dim, width=width, depth=depth, heads=heads, num_classes=num_classes, sigma_data=sigma_data)
        self.sigma_data = sigma_data
        self.net = AttentionNet(dim, width, depth, heads, num_classes)

    def forward(self, x, sigma, y=None):
        check_input(self, x)
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0]).reshape(-1, 1)
        sd = self.sigma_data
        c_skip, c_out = sd**2 / (s**2 + sd**2), s * sd / (s**2 + sd**2).sqrt()
        return c_skip * x + c_out * self.net(x / (s**2 + sd**2).sqrt(), s.log().reshape(-1) / 4, y)


CHECKPOINT_CLASSES = {"MLPClassifier": MLPClassifier, "AttentionDenoiser": AttentionDenoiser}

# The committed toy models: name -> (mixture, model constructor, training settings).
# The tree's denoisers follow the autoguidance paper's toy recipe (Karras et
# al. 2024): regression onto the exact denoiser of the tree at the noisy point ("exact" loss),
# ln sigma ~ N(-2.3, 1.5^2), batch 4096, Adam betas (0.9, 0.99), lr 1e-2 / sqrt(max(step/512, 1)),
# power-function EMA of relative std 0.010. Main: class A alone, width 64, 4096 steps; guide:
# width 32, 512 steps; the CFG demo's guide: classes A and B together, width 32, 512 steps.
# The course's own models (CFG with label dropout, PAG's attention model) use the same recipe on
# both classes; the classifiers are trained on noisy samples (cross-entropy, no exact target).
TREE_RECIPE = dict(loss="exact", loss_kwargs=dict(P_mean=-2.3, P_std=1.5), batch=4096, ema_std=0.010, betas=(0.9, 0.99))
TREE_DSM = dict(P_mean=-2.3, P_std=1.5, target="x0")
SPECS = {
    "tree_main": ("tree A", lambda: mlp.MLPDenoiser(width=64), dict(TREE_RECIPE, steps=4096)),
    "tree_guide": ("tree A", lambda: mlp.MLPDenoiser(width=32), dict(TREE_RECIPE, steps=512)),
    "tree_uncond": ("tree AB", lambda: mlp.MLPDenoiser(width=32), dict(TREE_RECIPE, steps=512)),
    # the same pair trained by denoising score matching (onto x0, all else equal): what the target changes (lesson 5)
    "tree_main_dsm": ("tree A", lambda: mlp.MLPDenoiser(width=64), dict(TREE_RECIPE, steps=4096, loss_kwargs=TREE_DSM)),
    "tree_guide_dsm": ("tree A", lambda: mlp.MLPDenoiser(width=32), dict(TREE_RECIPE, steps=512, loss_kwargs=TREE_DSM)),
    "tree_cfg": ("tree", lambda: mlp.MLPDenoiser(num_classes=2, width=64), dict(TREE_RECIPE, steps=4096, label_dropout=0.2)),
    "tree_attn": ("tree", lambda: AttentionDenoiser(num_classes=2, width=64, depth=2), dict(TREE_RECIPE, steps=3000, batch=1024)),
    "tree_classifier": ("tree", lambda: MLPClassifier(num_classes=2, width=64), dict(steps=3000)),
    "moons_main": ("moons", lambda: mlp.MLPDenoiser(num_classes=2, width=64), dict(steps=3000, label_dropout=0.2)),
    "moons_guide": ("moons", lambda: mlp.MLPDenoiser(num_classes=2, width=32), dict(steps=300, label_dropout=0.2)),
    "moons_attn": ("moons", lambda: AttentionDenoiser(num_classes=2, width=64, depth=2), dict(steps=2000, label_dropout=0.2, batch=1024)),
    "moons_classifier": ("moons", lambda: MLPClassifier(num_classes=2, width=64), dict(steps=2000)),
}


def mixture(name):
    """The mixture a toy model was trained on: "tree" (both classes, labelled), "tree A" (class A
    alone), "tree AB" (both classes, labels dropped: an unconditional model) or "moons"."""
    makers = {"tree": presets.tree, "tree A": lambda: presets.tree(("A",)).marginal(),
              "tree AB": lambda: presets.tree().marginal(), "moons": presets.two_moons}
    if name not in makers:
        raise ValueError(f"unknown toy data {name!r}; known: {sorted(makers)}")
    return makers[name]()


def train_one(name, steps=None, progress=True, batch=2048, seed=None, **changes):
    """Train the toy model ``name`` of :data:`SPECS` (``steps`` overrides its training length;
    ``seed``, if given, seeds the initialisation and the batches: another seed, another model of
    the same recipe). ``changes``: other settings of :func:`course.training.train` that differ from
    the recipe's (e.g. ``label_dropout=0.5``, ``drop=`` a learner's label dropout)."""
    data, make, settings = SPECS[name]
    if seed is not None:
        torch.manual_seed(seed)
        settings = {**settings, "seed": seed}
    gm, model, settings = mixture(data), make(), {**settings, **changes}
    batch = settings.pop("batch", batch)
    if steps is not None:
        settings["steps"] = steps
    if isinstance(model, MLPClassifier):
        train_classifier(model, gm, steps=settings["steps"], batch=batch, progress=progress, seed=settings.get("seed", 0))
        return model
    if settings.get("loss") == "exact":
        settings["mixture"] = gm
    trained, _ = training.train(model, training.mixture_source(gm), batch=batch, progress=progress, **settings)
    return trained


def load(name, folder=None):
    """Load the committed toy model ``name`` from ``folder`` (default: :func:`course.checkpoints.data_folder`)."""
    if name not in SPECS:
        raise ValueError(f"unknown toy model {name!r}; known: {sorted(SPECS)}")
    return checkpoints.load(Path(folder or checkpoints.data_folder()) / f"{name}.safetensors")


# What a stored measurement of toy samples depends on (course.measured): the committed model it
# samples and the code that samples, guides and scores (paths relative to the package).
MEASURED_SOURCES = ("samplers.py", "guiders.py", "alternatives.py", "schedules.py", "attention.py", "conversions.py",
                    "toy_models.py", "mlp.py", "mixtures.py", "presets.py", "evaluation.py", "metrics.py", "checkpoints.py")


def measurement_store(models=("moons_attn",), folder=None, record=None):
    """The :class:`course.measured.Store` of toy measurements, ``data/toy_measured.json``: scores of
    sample sets drawn from the committed ``models``, under a fingerprint of those models and of
    :data:`MEASURED_SOURCES` (a retrained model or changed sampler is measured again, live)."""
    from . import measured

    folder = Path(folder or checkpoints.data_folder())
    package = Path(__file__).resolve().parent
    files = [folder / f"{name}.safetensors" for name in sorted(models)] + [package / s for s in MEASURED_SOURCES]
    return measured.Store(folder / "toy_measured.json", measured.fingerprint(*files), record=record)


def main(argv=None):
    checkpoints.retrain_main("course.toy_models", SPECS, train_one, argv)


if __name__ == "__main__":
    main()
