"""ImageNet-64 presets reproduce the papers: the official files, scales and numbers, and
guided-diffusion's own sampler for ADM, checked step by step against its formulas."""
import math
import re

import pytest
import torch

from conftest import ROOT
from course import conversions as cv
from course.imagenet import guided_diffusion as gd
from course.imagenet import presets

# What EDM2's generate_images.py and guided-diffusion's README name (their READMEs and code).
OFFICIAL = {
    "edm2-s-unguided": dict(files=["edm2-img64-s-1073741-0.075.pkl"], w=1.0, published={"FID": 1.58}, sampler="edm_heun"),
    "edm2-s-autoguidance-fid": dict(files=["edm2-img64-s-1073741-0.045.pkl", "edm2-img64-xs-0134217-0.110.pkl"], w=1.70,
                                    published={"FID": 1.01}, sampler="edm_heun"),
    "edm2-s-autoguidance-fd-dinov2": dict(files=["edm2-img64-s-1073741-0.105.pkl", "edm2-img64-xs-0134217-0.175.pkl"], w=2.20,
                                          published={"FD_DINOv2": 31.85}, sampler="edm_heun"),
    "adm-cg": dict(files=["64x64_diffusion.pt", "64x64_classifier.pt"], w=1.0, published={}, sampler="dhariwal_nichol"),
    "adm-unguided": dict(files=["64x64_diffusion.pt"], w=1.0, published={"FID": 2.07}, sampler="dhariwal_nichol"),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_presets_are_pinned_to_the_official_files_scales_and_numbers(name):
    p, want = presets.PRESETS[name], OFFICIAL[name]
    assert presets.files_of(name) == want["files"]
    assert p["w"] == want["w"] and p["published"] == want["published"] and p["sampler"]["kind"] == want["sampler"]
    if want["sampler"] == "dhariwal_nichol":
        assert p["sampler"]["steps"] == 250  # --timestep_respacing 250
    else:
        assert p["sampler"] == dict(kind="edm_heun", steps=32, sigma_min=0.002, sigma_max=80.0, rho=7.0)


def test_readme_download_table_lists_every_preset_file():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("### ImageNet-64: getting the checkpoints", 1)[1].split("```", 1)[0]
    listed = set(re.findall(r"`([^`]+\.(?:pkl|pt))`", table))
    needed = {f for name in presets.PRESETS for f in presets.files_of(name)}
    assert listed == needed, f"README lists {sorted(listed)}, the presets need {sorted(needed)}"


def test_respacing_matches_guided_diffusion():
    kept = gd.space_timesteps(1000, 250)
    assert len(kept) == 250 and kept[0] == 0 and kept[-1] == 999 and kept[:4] == [0, 4, 8, 12]
    assert all(b > a for a, b in zip(kept, kept[1:]))
    assert gd.space_timesteps(1000, 1000) == list(range(1000))
    with pytest.raises(ValueError, match="1..1000"):
        gd.space_timesteps(1000, 0)


class FixedUNet(torch.nn.Module):
    """Returns a fixed eps and variance channel v whatever it is given, and records the timesteps."""

    def __init__(self, eps, v):
        super().__init__()
        self.eps, self.v, self.seen = eps, v, []

    def forward(self, x_t, t, y=None):
        self.seen.append(t.clone())
        return torch.cat([self.eps.expand_as(x_t), self.v.expand_as(x_t)], dim=1)


class LinearClassifier(torch.nn.Module):
    """logits = [sum(x), -sum(x)]: grad_x log softmax[y] is known in closed form."""

    def forward(self, x, t):
        s = x.flatten(1).sum(1)
        return torch.stack([s, -s], dim=1)


def test_one_step_equals_the_formulas():
    """One respaced ancestral step, guided and not, computed here from the formulas alone."""
    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64) * 0.5
    eps = torch.randn(1, 3, 4, 4, generator=g, dtype=torch.float64)
    v = torch.rand(1, 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    z = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1])
    betas = cv.cosine_betas(1000).to(torch.float64)
    abar_all = torch.cumprod(1 - betas, 0)
    sched = gd.Schedule.respaced(betas, 250)
    for i in (249, 100, 1):
        t, t_prev = gd.space_timesteps(1000, 250)[i], gd.space_timesteps(1000, 250)[i - 1]
        ab, ab_prev = abar_all[t], abar_all[t_prev]
        beta = 1 - ab / ab_prev  # the respaced beta
        post_var = beta * (1 - ab_prev) / (1 - ab)
        log_var = (v + 1) / 2 * math.log(beta) + (1 - (v + 1) / 2) * math.log(post_var)
        x0 = ((x_t - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-1, 1)
        mean = beta * ab_prev.sqrt() / (1 - ab) * x0 + (1 - ab_prev) * (1 - beta).sqrt() / (1 - ab) * x_t
        unet = FixedUNet(eps, v)
        got = gd.p_sample(unet, x_t, i, sched, y, noise=z)
        torch.testing.assert_close(got, mean + (0.5 * log_var).exp() * z, rtol=1e-10, atol=1e-10)
        assert int(unet.seen[-1][0]) == t  # the network is given the original timestep
        # classifier guidance shifts the mean by scale * Sigma * grad log p(y | x_t): grad of
        # log softmax([s, -s])[y] w.r.t. every pixel is (1 - p_y) * (+2 or -2)
        s = x_t.flatten(1).sum(1)
        p0 = torch.sigmoid(2 * s)
        grad = torch.where(y == 0, 2 * (1 - p0), -2 * p0).reshape(-1, 1, 1, 1).expand_as(x_t)
        guided = gd.p_sample(unet, x_t, i, sched, y, classifier=LinearClassifier(), scale=3.0, noise=z)
        torch.testing.assert_close(guided, mean + 3.0 * log_var.exp() * grad + (0.5 * log_var).exp() * z, rtol=1e-9, atol=1e-9)
    # the last step (i = 0) adds no noise
    torch.testing.assert_close(gd.p_sample(FixedUNet(eps, v), x_t, 0, sched, y, noise=z),
                               gd.p_mean_variance(FixedUNet(eps, v), x_t, 0, sched, y)[0])


def test_adm_cg_preset_runs_guided_diffusions_sampler_on_tiny_networks():
    D, description = presets.build("adm-cg", tiny=True)
    assert isinstance(D, presets.GuidedDiffusionModel) and D.scale == 1.0 and "respaced" in description
    unet_calls, clf_calls = [0], [0]
    D.unet.register_forward_pre_hook(lambda m, a: unet_calls.__setitem__(0, unet_calls[0] + 1))
    D.classifier.register_forward_pre_hook(lambda m, a: clf_calls.__setitem__(0, clf_calls[0] + 1))
    presets.PRESETS["adm-cg"]["sampler"]["steps"] = 5  # a short run: the code path, not the quality
    try:
        with torch.no_grad():
            x = presets.sample("adm-cg", D, torch.tensor([3]), torch.Generator().manual_seed(0))
    finally:
        presets.PRESETS["adm-cg"]["sampler"]["steps"] = 250
    assert x.shape == (1, 3, 64, 64) and torch.isfinite(x).all()
    assert (unet_calls[0], clf_calls[0]) == gd.calls(5, guided=True) == (5, 5)


def test_gpu_check_script_runs_its_whole_path_quickly_on_cpu():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--quick", "--device", "cpu"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    for row in ("forward EDM2-S", "sampling PAG w=2 (EDM2-S)", "generate edm2-s-autoguidance-fid"):
        assert row in out.stdout, out.stdout
