"""Training, EMA and checkpoints."""
import pytest
import torch

from course import checkpoints, mlp, presets, training
from course import conversions as cv


def test_edm_training_reduces_the_loss_and_labels_work():
    gm = presets.ring(classes=2)
    D, losses = training.train(mlp.MLPDenoiser(num_classes=2, width=32, depth=2), training.mixture_source(gm),
                               steps=300, batch=256, label_dropout=0.2, progress=False)
    assert sum(losses[-30:]) / 30 < 0.8 * sum(losses[:30]) / 30
    x = torch.randn(5, 2)
    assert D(x, 0.5, torch.tensor([0, 1, 0, 1, -1])).shape == (5, 2)
    torch.testing.assert_close(D(x, 0.5, None), D(x, 0.5, torch.full((5,), -1)))  # None is the null class


def test_eps_training_with_algorithm_1():
    gm = presets.ring()
    abar = cv.alphas_cumprod(cv.linear_betas()).float()
    net, losses = training.train(mlp.EpsMLP(width=32, depth=2), training.mixture_source(gm, labelled=False),
                                 loss="eps", abar=abar, steps=300, batch=256, progress=False)
    assert sum(losses[-30:]) / 30 < sum(losses[:30]) / 30
    D = cv.EpsDenoiser(net, abar)
    assert D(torch.randn(4, 2), 0.3).shape == (4, 2)


def test_label_dropout_rate():
    y = torch.zeros(100_000, dtype=torch.long)
    frac = (training.drop_labels(y, 0.2, torch.Generator().manual_seed(0)) == -1).float().mean().item()
    assert abs(frac - 0.2) < 0.01


def test_ema_tracks_the_model():
    m = torch.nn.Linear(2, 2)
    ema = training.EMA(m, beta=0.5)
    with torch.no_grad():
        m.weight.add_(1.0)
    before = ema.model.weight.clone()
    ema.update(m)
    torch.testing.assert_close(ema.model.weight, 0.5 * before + 0.5 * m.weight)


def test_checkpoint_round_trip_rebuilds_the_model(tmp_path):
    m = mlp.MLPDenoiser(num_classes=3, width=16, depth=1)
    path = tmp_path / "m.safetensors"
    checkpoints.save(m, path, command="python -m something")
    back = checkpoints.load(path)
    x = torch.randn(3, 2)
    torch.testing.assert_close(back(x, 0.4, torch.tensor([0, 1, 2])), m(x, 0.4, torch.tensor([0, 1, 2])))
    assert checkpoints.read(path)[1]["command"] == "python -m something"
    assert not list(tmp_path.glob("*.tmp"))  # the atomic write leaves no temporary file


def test_checkpoint_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        checkpoints.load(tmp_path / "missing.safetensors")
    m = mlp.MLPDenoiser(width=16, depth=1)
    path = tmp_path / "m.safetensors"
    checkpoints.save(m, path)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        checkpoints.load(truncated)
    with pytest.raises(ValueError, match="shape"):
        checkpoints.load(path, mlp.MLPDenoiser(width=32, depth=1))
    with pytest.raises(ValueError, match="missing keys"):
        checkpoints.load(path, mlp.MLPDenoiser(width=16, depth=2))
    with torch.no_grad():
        m.net.out.weight[0, 0] = float("nan")
    checkpoints.save(m, path)
    with pytest.raises(ValueError, match="NaN"):
        checkpoints.load(path)


# --- the autoguidance paper's toy recipe (issue: faithful toy) --------------------------------------
def test_power_ema_gamma_matches_edm2s_published_pairs():
    from course.training import power_ema_gamma

    assert abs(power_ema_gamma(0.05) - 16.97) < 0.01 and abs(power_ema_gamma(0.10) - 6.94) < 0.01
    with pytest.raises(ValueError, match="relative std"):
        power_ema_gamma(0.5)


def test_power_ema_starts_as_a_copy_and_lengthens():
    from course.training import PowerEMA

    model = torch.nn.Linear(1, 1, bias=False)
    avg = PowerEMA(model, std=0.05)
    decays = []
    for t in range(1, 6):
        with torch.no_grad():
            model.weight.fill_(float(t))
        avg.update(model)
        decays.append(avg.decay())
        if t == 1:
            assert avg.model.weight.item() == 1.0  # beta_1 = 0: the first update copies
    assert all(b > a for a, b in zip(decays, decays[1:])) and decays[-1] < 1


def test_exact_loss_is_zero_for_the_exact_denoiser_and_trains_a_net():
    from course import mlp, presets
    from course.training import exact_loss, mixture_source, train

    gm = presets.ring(k=4, classes=2)
    x0, k = gm.sample(256, generator=torch.Generator().manual_seed(0), return_components=True, dtype=torch.float64)
    y = gm.labels[k]
    assert exact_loss(gm, gm, x0, y, generator=torch.Generator().manual_seed(1)).item() < 1e-20
    D, losses = train(mlp.MLPDenoiser(num_classes=2, width=32), mixture_source(gm), loss="exact", mixture=gm,
                      steps=60, batch=256, ema_std=0.05, betas=(0.9, 0.99), progress=False)
    assert sum(losses[-10:]) < sum(losses[:10])
    with pytest.raises(ValueError, match="pass mixture="):
        train(mlp.MLPDenoiser(), mixture_source(gm), loss="exact", steps=1)


def test_tree_follows_the_papers_published_recipe():
    import math

    import numpy as np

    from course import presets

    gm = presets.tree()
    assert gm.num_components == 2 * 127 * 8 and gm.num_classes == 2
    torch.testing.assert_close(gm.weights.sum(), torch.tensor(1.0, dtype=torch.float64))
    # the first component, from the recipe by hand: class A's root branch, t = 0.07
    r = np.random.RandomState(2)
    dist = 0.292 * (0.2 * r.randn() + 1)
    u = np.array([math.cos(math.pi / 4), math.sin(math.pi / 4)])
    first = (np.array(presets.PAPER_TREE_ORIGIN) + u * dist * 0.07) * np.array(presets.PAPER_TREE_SCALE)
    torch.testing.assert_close(gm.means[0], torch.tensor(first))
    # A grows toward pi/4 and B toward 5 pi/4; the data's std is about 0.5 per axis, as in the paper
    a, b = gm.means[gm.labels == 0].mean(0), gm.means[gm.labels == 1].mean(0)
    assert (a > 0.3).all() and (b < -0.2).all()
    std = gm.sample(200_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64).std(0)
    assert ((std - 0.5).abs() < 0.07).all(), std
    only_a = presets.tree(("A",))
    assert only_a.num_components == 1016 and torch.allclose(only_a.means, gm.means[gm.labels == 0])


def official_tree(seed=2, levels=7):
    """The autoguidance paper's toy tree as its published code builds it, transcribed: the depth
    check on entry, both children's angles drawn at every level (the deepest included)."""
    import numpy as np

    rnd = np.random.RandomState(seed)
    origin, scale = np.array([0.0030, 0.0325]), np.array([1.3136, 1.3844])
    comps = []

    def recurse(cls, depth, pos, angle):
        if depth >= levels:
            return
        d = np.array([np.cos(angle), np.sin(angle)])
        dist = 0.292 * (0.8**depth) * (rnd.randn() * 0.2 + 1)
        thick = 0.2 * (0.8**depth) / dist
        size = scale * dist * 0.06
        for t in np.linspace(0.07, 0.93, num=8):
            cov = (np.outer(d, d) + (np.eye(2) - np.outer(d, d)) * thick**2) * np.outer(size, size)
            comps.append((cls, dist * 0.5**depth, (pos + d * dist * t) * scale, cov))
        for sign in [1, -1]:
            recurse(cls, depth + 1, pos + d * dist, angle + sign * (0.7**depth) * (rnd.randn() * 0.2 + 1))

    recurse(0, 0, origin, np.pi * 0.25)
    recurse(1, 0, origin, np.pi * 1.25)
    return comps


def test_tree_equals_the_official_tree_component_for_component():
    import numpy as np

    from course import presets

    gm, ref = presets.tree(), official_tree()
    assert gm.num_components == len(ref) == 2032
    assert gm.labels.tolist() == [c[0] for c in ref]
    phi = np.array([c[1] for c in ref])
    torch.testing.assert_close(gm.weights, torch.tensor(phi / phi.sum()), rtol=0, atol=1e-6)
    torch.testing.assert_close(gm.means, torch.tensor(np.array([c[2] for c in ref])), rtol=0, atol=1e-6)
    torch.testing.assert_close(gm.covs, torch.tensor(np.array([c[3] for c in ref])), rtol=0, atol=1e-6)
    # a component deep in class B, by hand: B's root branch consumes one draw after the whole of A
    # (127 branches x 1 + 254 child angles = 381 draws), then its first child's angle (one draw) and
    # that child's length (one more): the first component of B's second branch, t = 0.07
    r = np.random.RandomState(2)
    r.randn(381)
    dist0 = 0.292 * (r.randn() * 0.2 + 1)
    u0 = np.array([np.cos(1.25 * np.pi), np.sin(1.25 * np.pi)])
    angle1 = 1.25 * np.pi + 1 * (0.7**0) * (r.randn() * 0.2 + 1)
    dist1 = 0.292 * 0.8 * (r.randn() * 0.2 + 1)
    u1 = np.array([np.cos(angle1), np.sin(angle1)])
    mean = (np.array([0.0030, 0.0325]) + u0 * dist0 + u1 * dist1 * 0.07) * np.array([1.3136, 1.3844])
    second_branch_of_b = 1016 + 8  # B's components follow A's 1016; its root branch has 8
    torch.testing.assert_close(gm.means[second_branch_of_b], torch.tensor(mean), rtol=0, atol=1e-12)


def test_training_target_is_the_exact_denoiser_with_one_sigma_per_row():
    """The float32 fast path of the exact-target loss against the float64 denoiser, per row and per class."""
    from course import presets

    gm = presets.tree(depth=5)
    g = torch.Generator().manual_seed(0)
    x0, k = gm.sample(2000, generator=g, dtype=torch.float64, return_components=True)
    sigma = (torch.randn(2000, generator=g, dtype=torch.float64) * 1.5 - 2.3).exp()
    x = x0 + sigma[:, None] * torch.randn(2000, 2, generator=g, dtype=torch.float64)
    y = torch.where(torch.rand(2000, generator=g) < 0.2, -1, gm.labels[k])  # label dropout: -1 is every class
    exact = gm.denoise(x, sigma, y)
    torch.testing.assert_close(gm.training_target(x, sigma, y, dtype=torch.float64), exact, rtol=1e-10, atol=1e-12)
    fast = gm.training_target(x.float(), sigma.float(), y)
    assert fast.dtype == torch.float32
    err = ((fast.double() - exact).norm(dim=1) / sigma).max().item()
    assert err < 2e-4, f"float32 training target is off by {err:.1e} sigma (expected < 2e-4)"
