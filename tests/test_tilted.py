"""Lesson 9's machinery: the tilted target on a grid, the SDE / PCG samplers and the Feynman-Kac
corrector, each checked against a closed form or an exact identity."""
import math

import pytest
import torch

from course import guiders, presets, samplers, smc, tilted
from course.mixtures import GaussianMixture

F64 = torch.float64


def gaussian(mean, cov):
    return GaussianMixture([1.0], torch.as_tensor(mean, dtype=F64)[None], torch.as_tensor(cov, dtype=F64)[None])


def test_the_grid_tilt_of_two_gaussians_is_the_closed_form_gaussian():
    a, A = torch.tensor([0.2, -0.1], dtype=F64), torch.tensor([[0.09, 0.02], [0.02, 0.04]], dtype=F64)
    b, B = torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64) * 0.25
    for gamma in (1.0, 3.0):
        G = tilted.TiltedGrid(gaussian(a, A), gaussian(b, B), gamma, lim=((-2.0, 2.0), (-2.0, 2.0)), n=128)
        m, C = tilted.gaussian_tilt(a, A, b, B, gamma)
        m_grid = (G.mass.reshape(-1, 1) * G.points).sum(0)
        d = G.points - m_grid
        C_grid = (G.mass.reshape(-1, 1, 1) * d[:, :, None] * d[:, None, :]).sum(0)
        # the midpoint rule on a smooth, fast-decaying density is exact up to the mass the box cuts
        # off (6 stds away: ~1e-9)
        assert (m_grid - m).abs().max() < 1e-7 and (C_grid - C).abs().max() < 1e-7, (gamma, m_grid, m, C_grid, C)
        # the model (one Gaussian of std h/2 per cell) is the target blurred by s^2 = (h/2)^2
        x = G.model.sample(200_000, generator=torch.Generator().manual_seed(0), dtype=F64)
        assert torch.allclose(torch.cov(x.T), C + G.s**2 * torch.eye(2, dtype=F64), atol=2e-3)
        assert G.dropped < 1e-9


def test_gaussian_tilt_refuses_a_gamma_that_is_not_normalisable():
    with pytest.raises(ValueError, match="not normalisable"):
        tilted.gaussian_tilt(torch.zeros(1, dtype=F64), torch.eye(1, dtype=F64) * 2, torch.zeros(1, dtype=F64),
                             torch.eye(1, dtype=F64), 3.0)  # 3/2 - 2 < 0


def test_fft_blur_equals_the_mixture_density_at_the_cell_centres():
    gm = presets.overlap()
    T = tilted.TiltedGrid(gm.condition(0), gm, 2.0, lim=((-2.0, 2.0), (-2.0, 2.0)), n=64)
    for sigma in (0.0, 0.05, 0.3, 1.0):
        fft = T.noised(sigma).reshape(-1)
        direct = T.model.log_prob(T.points, sigma).exp() * T.h**2
        assert (fft - direct).abs().max() < 1e-9 * direct.max(), sigma


def test_a_box_that_cuts_the_target_off_is_refused():
    gm = presets.overlap()
    with pytest.raises(ValueError, match="pass a larger lim"):
        tilted.TiltedGrid(gm.condition(0), gm, 1.0, lim=((-0.5, 0.5), (-0.5, 0.5)), n=32)
    with pytest.raises(ValueError, match="square box"):
        tilted.TiltedGrid(gm.condition(0), gm, 1.0, lim=((-2.0, 2.0), (-1.0, 1.0)), n=32)


def test_tv_of_exact_samples_is_small_and_of_a_shifted_set_large():
    gm = presets.overlap()
    T = tilted.TiltedGrid(gm.condition(0), gm, 3.0, lim=((-2.0, 2.0), (-2.0, 2.0)), n=64)
    x = T.sample(20_000, torch.Generator().manual_seed(0))
    assert T.tv(x, 16) < 0.05
    assert T.tv(x + torch.tensor([0.5, 0.0], dtype=F64), 16) > 0.4
    assert T.tv(x + 10.0, 16) == pytest.approx(1.0)  # every sample outside the box


def test_the_1d_gaussian_variances_match_the_published_values():
    """Bradley & Nakkiran: ODE 2^(1 - gamma); reverse SDE 0.583 / 0.388 / 0.222 at gamma = 2 / 3 / 5."""
    for gamma, sde in [(2.0, 0.583), (3.0, 0.388), (5.0, 0.222)]:
        assert tilted.cfg_variance_1d(gamma) == pytest.approx(2 ** (1 - gamma), rel=2e-3)
        assert tilted.cfg_variance_1d(gamma, sde=True) == pytest.approx(sde, abs=1.5e-3)


def test_class_pair_routes_null_rows_to_the_unconditional_model():
    D = tilted.ClassPair(gaussian([0.0], [[1.0]]), gaussian([0.0], [[2.0]]))
    x = torch.tensor([[1.0], [1.0]], dtype=F64)
    out = D(x, 0.5, torch.tensor([0, -1]))
    assert out[0, 0] == pytest.approx(1 / 1.25) and out[1, 0] == pytest.approx(2 / 2.25)  # D = x var / (var + sigma^2)
    assert torch.equal(D(x, 0.5, None), D.uncond(x, 0.5))


def test_edm_sde_reaches_the_variance_of_its_exact_recursion():
    D = gaussian([0.0], [[1.0]])
    g = torch.Generator().manual_seed(0)
    x = samplers.edm_sde(D, torch.randn(40_000, 1, generator=g, dtype=F64) * 80, samplers.edm_sigmas(64), generator=g)
    want = tilted.cfg_variance_1d(1.0, sde=True, steps=64, sigma_max=80.0, sigma_min=0.002)
    assert x.var().item() == pytest.approx(want, rel=0.03)


def test_pcg_without_corrector_is_euler_with_the_predictor():
    gm = presets.overlap()
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=F64) * 80
    y = torch.zeros(64, dtype=torch.long)
    sig = samplers.edm_sigmas(16)
    assert torch.allclose(samplers.pcg(gm, guiders.CFG(gm, 3.0), x, sig, y, corrector_steps=0), samplers.edm_euler(gm, x, sig, y),
                          rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="delta"):
        samplers.pcg(gm, gm, x, sig, y, delta=2.0)


def test_one_particle_smc_is_the_cfg_reverse_sde():
    gm = presets.overlap()
    y = torch.zeros(128, dtype=torch.long)
    x = torch.randn(128, 2, generator=torch.Generator().manual_seed(0), dtype=F64) * 80
    sig = samplers.edm_sigmas(32)
    a, info = smc.feynman_kac_cfg(gm, 3.0, x.clone(), sig, y, particles=1, generator=torch.Generator().manual_seed(1))
    b = samplers.edm_sde(guiders.CFG(gm, 3.0), x.clone(), sig, y, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(a, b, atol=1e-12) and info["resamples"] == 0 and info["calls"] == 64


def test_smc_reaches_the_tilted_variance_where_the_sde_does_not():
    D = tilted.ClassPair(gaussian([0.0], [[1.0]]), gaussian([0.0], [[2.0]]))
    g = torch.Generator().manual_seed(0)
    n, sig = 16_384, samplers.edm_sigmas(128)
    y = torch.zeros(n, dtype=torch.long)
    x_T = torch.randn(n, 1, generator=g, dtype=F64) * 80
    sde, _ = smc.feynman_kac_cfg(D, 3.0, x_T.clone(), sig, y, particles=1, generator=g)
    fk, info = smc.feynman_kac_cfg(D, 3.0, x_T.clone(), sig, y, particles=256, generator=g)
    assert sde.var().item() == pytest.approx(0.388, rel=0.06)  # the SDE's own answer
    assert fk.var().item() == pytest.approx(2 / (1 + 3.0), rel=0.06)  # the tilted target's
    assert info["resamples"] > 0 and 0 < info["min_ess"] < 1


def test_weights_ess_and_resampling():
    D_c, D_u = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=F64), torch.zeros(2, 2, dtype=F64)
    assert torch.equal(smc.fk_log_weight_increment(D_c, D_u, 1.0, 0.5, 0.4), torch.zeros(2, dtype=F64))
    assert smc.fk_log_weight_increment(D_c, D_u, 3.0, 0.5, 0.4)[0] == pytest.approx(6 * (0.25 - 0.16) / 2 / 0.5**4)
    assert torch.allclose(smc.effective_sample_size(torch.zeros(3, 8, dtype=F64)), torch.full((3,), 8.0, dtype=F64))
    one_hot = torch.tensor([[-1e9, 0.0, -1e9, -1e9]], dtype=F64)
    assert smc.effective_sample_size(one_hot).item() == pytest.approx(1.0)
    assert torch.equal(smc.systematic_resample(one_hot), torch.ones(1, 4, dtype=torch.long))
    assert torch.equal(smc.systematic_resample(torch.zeros(2, 5, dtype=F64)), torch.arange(5).expand(2, 5))
    with pytest.raises(ValueError, match="divides the batch"):
        smc.feynman_kac_cfg(presets.overlap(), 2.0, torch.zeros(10, 2, dtype=F64), samplers.edm_sigmas(4),
                            torch.zeros(10, dtype=torch.long), particles=3)


def test_lesson9_worlds():
    box = presets.boxes(8)
    assert box.num_classes == 2 and box.num_components == 128
    x = box.condition(0).sample(5000, generator=torch.Generator().manual_seed(0), dtype=F64)
    assert ((x[:, 0] > -1.3) & (x[:, 0] < 0.3)).all() and abs(x[:, 0].mean().item() + 0.5) < 0.02  # blur std 1/16
    two = presets.two_modes_1d()
    assert two.dim == 1 and torch.allclose(two.class_weights, torch.tensor([0.5, 0.5], dtype=F64))
    assert math.isclose(presets.overlap().class_weights[0].item(), 0.5)
