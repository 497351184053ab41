"""The digits rung: the data, the feature-space metrics on cases with known answers, and the
committed checkpoints load and sample."""
import pytest
import torch

from course import digits, guiders, metrics, samplers


def test_data_split_and_range():
    x, y, xt, yt = digits.load()
    assert x.shape == (1347, 1, 8, 8) and xt.shape == (450, 1, 8, 8)
    assert x.min() == -1 and x.max() == 1
    counts = torch.bincount(yt)
    assert len(counts) == 10 and counts.min() >= 40  # stratified: about 45 of each class in the test set


def test_frechet_distance_closed_form():
    mu1, mu2 = torch.tensor([0.0, 0.0]), torch.tensor([3.0, 4.0])
    c1, c2 = torch.diag(torch.tensor([1.0, 4.0])), torch.diag(torch.tensor([4.0, 1.0]))
    # ||mu1 - mu2||^2 + Tr(c1 + c2 - 2 (c1 c2)^(1/2)) = 25 + (10 - 2 * (2 + 2)) = 27
    assert metrics.frechet_distance(mu1, c1, mu2, c2) == pytest.approx(27.0, abs=1e-9)
    A = torch.randn(5, 5, dtype=torch.float64)
    c = A @ A.T
    assert metrics.frechet_distance(torch.zeros(5), c, torch.zeros(5), c) == pytest.approx(0.0, abs=1e-8)


def test_feature_metrics_on_identical_and_disjoint_sets():
    feat = digits.load_model("digits_features")
    _, _, xt, yt = digits.load()
    same = digits.measure(xt, yt, feat, xt)
    assert same["fd"] == pytest.approx(0.0, abs=1e-6) and same["precision"] == 1.0 and same["recall"] == 1.0
    assert same["accuracy"] > 0.9
    with torch.no_grad():
        f = feat.features(xt).double()
    far = f + 100.0  # the same cloud, moved far away: disjoint
    assert metrics.frechet_distance(*metrics.feature_statistics(far), *metrics.feature_statistics(f)) == pytest.approx(100.0**2 * f.shape[1], rel=1e-6)
    assert metrics.precision_recall(f, far, k=3) == (0.0, 0.0)
    assert metrics.precision_recall(f, f, k=3) == (1.0, 1.0)


@pytest.mark.parametrize("name", sorted(digits.SPECS))
def test_committed_checkpoints_load(name):
    model = digits.load_model(name)
    assert not model.training


def test_committed_models_sample_and_classify():
    D = digits.load_model("digits_main")
    feat = digits.load_model("digits_features")
    _, _, xt, yt = digits.load()
    with torch.no_grad():
        assert (feat(xt).argmax(1) == yt).double().mean() > 0.9  # the feature classifier works on real digits
        labels = torch.arange(10).repeat(3)
        x = samplers.sample(guiders.CFG(D, 2.0), 30, (1, 8, 8), y=labels, steps=16)
    assert x.shape == (30, 1, 8, 8) and torch.isfinite(x).all()
    assert (feat(x.clamp(-1, 1)).argmax(1) == labels).double().mean() > 0.5  # samples show the requested class


def test_learning_curve_stops_after_patience_evaluations_without_a_better_fd(monkeypatch):
    """The early-stopping monitor of the main model, on a scripted sequence of FDs."""
    curve = digits.LearningCurve(feature_net=None, patience=2, progress=False)
    fds = iter([50.0, 40.0, 41.0, 39.0, 45.0, 44.0, 10.0])
    monkeypatch.setattr(digits, "unguided_scores", lambda D, f, **kw: dict(fd=next(fds), precision=0.0, recall=0.0, accuracy=0.0))
    stops = [curve(step, torch.nn.Linear(1, 1)) for step in (1000, 2000, 3000, 4000, 5000, 6000)]
    # best at 2000; 3000 is worse (1 since best); 4000 is a new best; 5000 and 6000 worse -> stop at 6000
    assert stops == [False, False, False, False, False, True], stops
    assert curve.best["step"] == 4000 and curve.best["fd"] == 39.0


def test_committed_learning_curve_matches_the_committed_main_model():
    curve = digits.load_curve()
    steps = [r["step"] for r in curve["rows"]]
    fds = {r["step"]: r["fd"] for r in curve["rows"]}
    assert curve["best_step"] in fds and fds[curve["best_step"]] == min(fds.values())
    patience = curve["stopping"]["patience"]
    stopped_early = steps[-1] < curve["stopping"]["max_steps"]
    assert not stopped_early or steps[-1] - curve["best_step"] == patience * curve["stopping"]["every"]
    assert "python -m course.digits" in curve["command"]


@pytest.mark.parametrize("name", sorted(digits.SPECS))
def test_train_one_trains_each_kind_of_model(name):
    """What `python -m course.digits data` runs, for a few steps: each model's recipe builds, trains
    and returns a network of the committed checkpoint's shapes, in eval mode."""
    torch.manual_seed(0)
    model = digits.train_one(name, steps=3, progress=False)
    committed = digits.load_model(name)
    assert not model.training
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in committed.state_dict().items()}
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())
