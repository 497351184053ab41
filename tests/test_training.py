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
