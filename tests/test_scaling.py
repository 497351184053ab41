"""Guidance at ImageNet-64 scale: presets, the checkpoint finder, the checkpoint code path on tiny
random networks saved in the released formats, the generation command and the FID pipeline."""
import json
import subprocess
import sys

import pytest
import torch

from course import fid, metrics
from course.imagenet import presets
from course.imagenet.adm import ADMClassifier, ADMUNet
from course.imagenet.edm2 import EDM2Denoiser
from edm2_format import write_edm2_pickle


def sample_one(name, D, steps=2):
    """One image with the preset's own sampler, shortened to ``steps`` steps."""
    with torch.no_grad():
        return presets.sample(name, D, torch.tensor([7]), torch.Generator().manual_seed(0), steps=steps)


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_every_preset_builds_and_samples_with_tiny_networks(name):
    D, description = presets.build(name, tiny=True)
    assert "tiny random-weight stand-in" in description and "NOT the released model" in description
    x = sample_one(name, D)
    assert x.shape == (1, 3, 64, 64) and torch.isfinite(x).all()


def test_missing_checkpoints_error_clearly(tmp_path, monkeypatch):
    monkeypatch.delenv("COURSE_CHECKPOINTS", raising=False)
    with pytest.raises(FileNotFoundError, match="set COURSE_CHECKPOINTS"):
        presets.build("edm2-s-autoguidance-fid")
    with pytest.raises(FileNotFoundError, match=r"checkpoint edm2-img64-s-1073741-0.045.pkl not found in"):
        presets.build("edm2-s-autoguidance-fid", folder=tmp_path)
    monkeypatch.setenv("COURSE_CHECKPOINTS", str(tmp_path))
    assert not presets.available("adm-cg")
    with pytest.raises(ValueError, match="unknown preset"):
        presets.build("edm2-s-cfg")


def test_checkpoint_code_path_on_tiny_networks_in_the_released_formats(tmp_path):
    torch.manual_seed(0)
    edm2_files = {f for name in presets.PRESETS if presets.PRESETS[name]["family"] == "edm2" for f in presets.files_of(name)}
    for name in edm2_files:
        write_edm2_pickle(tmp_path / name, EDM2Denoiser(**presets.TINY_EDM2), presets.TINY_EDM2)
    torch.save(ADMUNet(**presets.TINY_ADM).state_dict(), tmp_path / presets.ADM_UNET)
    torch.save(ADMClassifier(**presets.TINY_ADM_CLASSIFIER).state_dict(), tmp_path / presets.ADM_CLASSIFIER)
    adm_config = {k: v for k, v in presets.TINY_ADM.items()}
    adm_config["classifier"] = presets.TINY_ADM_CLASSIFIER
    for name in [n for n, p in presets.PRESETS.items() if "layers" not in p]:  # PAG's layer names need the released layout
        assert presets.available(name, tmp_path), name
        D, description = presets.build(name, folder=tmp_path, adm_config=adm_config)
        assert "checkpoints in" in description
        assert torch.isfinite(sample_one(name, D)).all()


def test_generate_command_writes_grid_and_metrics_and_resumes(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "course.generate", "adm-icg", "--tiny", "--out", str(out), "--n", "2", "--batch", "1", "--steps", "4"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-2000:]
    result = json.loads((out / "metrics.json").read_text())
    assert result["tiny"] is True and result["n"] == 2 and result["images_this_run"] == 2
    assert (out / "grid.png").stat().st_size > 0 and len(list(out.glob("batch_*.safetensors"))) == 2
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0 and json.loads((out / "metrics.json").read_text())["images_this_run"] == 0  # resumed
    missing = subprocess.run([sys.executable, "-m", "course.generate", "adm-cg", "--out", str(tmp_path / "x"), "--checkpoints", str(tmp_path)],
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "64x64_diffusion.pt not found" in missing.stderr


def test_fid_pipeline_with_a_user_supplied_network_and_reference(tmp_path):
    class Features(torch.nn.Module):
        def forward(self, x):
            return x.float().mean(dim=(2, 3))  # [N, 3] per-channel means: a stand-in feature network

    path = tmp_path / "features.pt2"
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (200, 3, 8, 8), generator=g, dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1, max=100_000)
    torch.export.save(torch.export.export(Features(), (images[:4],), dynamic_shapes={"x": {0: batch}}), str(path))
    net = fid.load_feature_network(path)
    feats = fid.features_of(images, net, batch=64)
    fid.save_reference(tmp_path / "ref.npz", feats)
    ref = fid.load_reference(tmp_path / "ref.npz")
    assert fid.frechet_to_reference(feats, ref) == pytest.approx(0.0, abs=1e-6)
    shifted = fid.features_of((images.int() // 2).to(torch.uint8), net)
    mu, cov = metrics.feature_statistics(shifted)
    assert fid.frechet_to_reference(shifted, ref) == pytest.approx(metrics.frechet_distance(mu, cov, *ref))
    assert fid.frechet_to_reference(shifted, ref) > 100
    bad = tmp_path / "bad.pt2"
    bad.write_bytes(b"not a program")
    with pytest.raises(ValueError, match="torch.export.save"):
        fid.load_feature_network(bad)
    with pytest.raises(FileNotFoundError, match="reference statistics"):
        fid.load_reference(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="-d but the reference"):
        fid.frechet_to_reference(torch.randn(10, 5), ref)
