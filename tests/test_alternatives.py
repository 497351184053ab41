"""Lesson 8's guiders, the CFG++ sampler and the scale schedules: each formula checked on
denoisers with known outputs, with its neutral setting (the one that gives back CFG or the plain
model) where one exists."""
import math

import pytest
import torch

from course import alternatives as alt
from course import guiders, samplers, schedules, toy_models
from course.attention import Perturbation, attention_weights, query_blur

F64 = torch.float64


class Linear:
    """A conditional denoiser with known outputs: D_c = 0.5 x + a, D_u = 0.2 x + b (NULL label -1)."""

    a = torch.tensor([1.0, 0.0], dtype=F64)
    b = torch.tensor([0.0, -1.0], dtype=F64)

    def __call__(self, x, sigma, y=None):
        null = torch.ones(x.shape[0], dtype=torch.bool) if y is None else torch.as_tensor(y).reshape(-1) < 0
        return torch.where(null[:, None], 0.2 * x + self.b, 0.5 * x + self.a)


D = Linear()
X = torch.tensor([[0.3, -0.2], [1.0, 2.0], [-1.5, 0.5]], dtype=F64)
Y = torch.zeros(3, dtype=torch.long)
DC, DU = 0.5 * X + Linear.a, 0.2 * X + Linear.b


def cfg(w):
    return DU + w * (DC - DU)


def test_apg_neutral_settings_formula_threshold_and_momentum():
    assert torch.allclose(alt.APG(D, 3.0, eta=1.0)(X, 0.5, Y), cfg(3.0))  # eta 1, no threshold, no momentum: CFG
    assert torch.allclose(alt.APG(D, 1.0)(X, 0.5, Y), DC)  # w = 1: the conditional model
    delta = DC - DU
    par = ((delta * DC).sum(1, keepdim=True) / (DC * DC).sum(1, keepdim=True)) * DC
    out = alt.APG(D, 3.0, eta=0.0)(X, 0.5, Y)
    assert torch.allclose(out, DC + 2.0 * (delta - par))
    assert torch.allclose(((out - DC) * DC).sum(1), torch.zeros(3, dtype=F64), atol=1e-12)  # eta 0: no parallel part
    r = 0.5
    clipped = delta * torch.clamp(r / delta.norm(dim=1, keepdim=True), max=1.0)
    assert torch.allclose(alt.APG(D, 3.0, eta=1.0, r=r)(X, 0.5, Y), DC + 2.0 * clipped)
    g = alt.APG(D, 2.0, eta=1.0, beta=-0.5)
    first = g(X, 1.0, Y)
    assert torch.allclose(first, DC + delta)  # the running average starts at 0
    second = g(X, 0.5, Y)
    assert torch.allclose(second, DC + (delta - 0.5 * delta))  # running = delta + beta * running
    assert torch.allclose(g(X, 2.0, Y), first)  # sigma grew: a new trajectory, momentum reset
    with pytest.raises(ValueError, match="beta must be <= 0"):
        alt.APG(D, 2.0, beta=0.5)


def test_apg_project_is_orthogonal_and_sums_back():
    delta, Dc = torch.randn(4, 1, 4, 4, dtype=F64), torch.randn(4, 1, 4, 4, dtype=F64)
    par, orth = alt.apg_project(delta, Dc)
    assert torch.allclose(par + orth, delta)
    assert torch.allclose((orth * Dc).flatten(1).sum(1), torch.zeros(4, dtype=F64), atol=1e-12)


def test_cfg_rescale():
    assert torch.allclose(alt.CFGRescale(D, 3.0, phi=0.0)(X, 0.5, Y), cfg(3.0))
    out = alt.CFGRescale(D, 3.0, phi=1.0)(X, 0.5, Y)
    assert torch.allclose(out.std(1), DC.std(1))
    mix = alt.CFGRescale(D, 3.0, phi=0.7)(X, 0.5, Y)
    assert torch.allclose(mix, 0.7 * out + 0.3 * cfg(3.0))


def test_cfg_zero_star_on_the_flow_velocity():
    """The paper's update on flow-matching velocities (x_t = (1 - t) x0 + t eps, v = eps - x0),
    transcribed in the flow's own variables, against the guider in the course's EDM terms."""
    sigma = 0.5
    t = sigma / (1 + sigma)  # the flow time of this sigma; x_t = (1 - t) x
    eps_c, eps_u = (X - DC) / sigma, (X - DU) / sigma
    v_c, v_u = eps_c - DC, eps_u - DU  # the velocities the model would output
    s = (v_c * v_u).sum(1, keepdim=True) / ((v_u * v_u).sum(1, keepdim=True) + 1e-8)
    v = v_u * s + 3.0 * (v_c - v_u * s)  # the official update
    x_t = (1 - t) * X
    x0 = x_t - t * v  # rectified flow: x0 = x_t - t v
    assert torch.allclose(alt.CFGZeroStar(D, 3.0)(X, sigma, Y), x0)
    assert torch.allclose(alt.CFGZeroStar(D, 1.0)(X, sigma, Y), DC)  # w = 1: the conditional model
    g = alt.CFGZeroStar(D, 3.0, zero_above=1.0)
    # zero velocity: the flow's sample stays put, x0 = x_t, which is D = x / (1 + sigma) - not D = x
    assert torch.allclose(g(X, 2.0, Y), X / 3.0) and torch.allclose(g(X, sigma, Y), x0)
    assert torch.allclose(alt.cfg_zero_scale(v_c, v_u), s.reshape(-1))


def test_tcfg():
    sigma = 0.5
    assert torch.allclose(alt.TCFG(D, 1.0)(X, sigma, Y), DC)
    s_c, s_u = (DC - X) / sigma**2, (DU - X) / sigma**2
    want = []
    for i in range(3):
        _, _, Vh = torch.linalg.svd(torch.stack([s_c[i], s_u[i]]))
        v1 = Vh[0]
        su = (s_u[i] @ v1) * v1
        want.append(X[i] + sigma**2 * (su + 3.0 * (s_c[i] - su)))
    assert torch.allclose(alt.TCFG(D, 3.0)(X, sigma, Y), torch.stack(want))


def kornia_pyramid_transcribed(img):
    """The FDG paper's two-level Laplacian pyramid (kornia's pyrdown / pyrup), transcribed:
    5x5 kernel [1, 4, 6, 4, 1]^T [1, 4, 6, 4, 1] / 256, reflect borders, bilinear resampling
    (align_corners=False); returns the full-size expansion of the coarse level and the detail."""
    import torch.nn.functional as F

    k1 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=img.dtype)
    k = (k1[:, None] * k1[None, :] / 256).expand(img.shape[1], 1, 5, 5)
    blur = lambda z: F.conv2d(F.pad(z, [2, 2, 2, 2], mode="reflect"), k, groups=z.shape[1])
    H, W = img.shape[-2:]
    down = F.interpolate(blur(img), size=(H // 2, W // 2), mode="bilinear", align_corners=False)
    up = blur(F.interpolate(down, size=(H, W), mode="bilinear", align_corners=False))
    return up, img - up


def test_fdg_bands_are_the_papers_pyramid():
    img = torch.randn(2, 3, 8, 8, dtype=F64)
    low, high = alt.laplacian_split(img)
    ref_low, ref_high = kornia_pyramid_transcribed(img)
    torch.testing.assert_close(low, ref_low, rtol=0, atol=1e-12)
    torch.testing.assert_close(high, ref_high, rtol=0, atol=1e-12)
    assert torch.allclose(low + high, img)
    const = torch.full((1, 1, 4, 4), 2.0, dtype=F64)
    assert torch.allclose(alt.laplacian_split(const)[0], const)  # a flat image has no high band
    with pytest.raises(ValueError, match="even H and W"):
        alt.laplacian_split(torch.zeros(1, 1, 3, 4))

    class Img:
        def __call__(self, x, sigma, y=None):
            null = (torch.as_tensor(y).reshape(-1) < 0).reshape(-1, 1, 1, 1)
            return torch.where(null, 0.2 * x, 0.5 * x + 0.1 * x.flip(-1))

    x = torch.randn(2, 1, 4, 4, dtype=F64)
    yy = torch.zeros(2, dtype=torch.long)
    assert torch.allclose(alt.FDG(Img(), 3.0, 3.0)(x, 0.5, yy), guiders.CFG(Img(), 3.0)(x, 0.5, yy))
    Dc, Du = Img()(x, 0.5, yy), Img()(x, 0.5, -torch.ones(2, dtype=torch.long))
    # the paper guides each pyramid level and rebuilds: pyr_up(coarse guided) + detail guided
    (Lc, Hc), (Lu, Hu) = kornia_pyramid_transcribed(Dc), kornia_pyramid_transcribed(Du)
    assert torch.allclose(alt.FDG(Img(), 1.0, 4.0)(x, 0.5, yy), Lc + Hu + 4.0 * (Hc - Hu))


def test_mambo_g_measures_its_ratio_on_the_flow_velocity():
    sigma = 0.5
    assert torch.allclose(alt.MamboG(D, 3.0, alpha=0.0)(X, sigma, Y), cfg(3.0))
    v_c, v_u = (X - DC) / sigma - DC, (X - DU) / sigma - DU  # the model's velocities (eps - x0)
    ratio = (v_c - v_u).norm(dim=1, keepdim=True) / v_u.norm(dim=1, keepdim=True)  # diffusers' mambo_guidance
    w_eff = 1 + 2.0 * torch.exp(-8.0 * ratio)
    v = v_u + w_eff * (v_c - v_u)
    x0 = X / (1 + sigma) - sigma / (1 + sigma) * v  # back to x0: x_t - t v with x_t = (1 - t) x, t = sigma / (1 + sigma)
    assert torch.allclose(alt.MamboG(D, 3.0)(X, sigma, Y), x0)


def seg_blur_transcribed(img, sigma):
    """The SEG paper's gaussian_blur_2d of queries laid out as images [B, C, H, W], transcribed:
    kernel ceil(6 sigma) + 1 taps made odd, capped at the image's size, normalised Gaussian taps,
    reflect padding, one depthwise 2-D convolution."""
    import torch.nn.functional as F

    size = math.ceil(6 * sigma) + 1 - math.ceil(6 * sigma) % 2
    size = min(size, img.shape[-1] - (img.shape[-1] % 2 - 1))
    x = torch.linspace(-(size - 1) / 2, (size - 1) / 2, steps=size, dtype=torch.float64)
    taps = torch.exp(-0.5 * (x / sigma) ** 2)
    taps = taps / taps.sum()
    k = torch.mm(taps[:, None], taps[None, :]).expand(img.shape[-3], 1, size, size)
    return F.conv2d(F.pad(img, [size // 2] * 4, mode="reflect"), k, groups=img.shape[-3])


def test_seg_query_blur_is_the_papers():
    B = query_blur(16, math.inf)
    assert torch.allclose(B, torch.full((16, 16), 1 / 16))
    for side, sigma in ((4, 0.5), (4, 1.0), (8, 1.3), (4, 3.0), (3, 1.0)):
        q = torch.randn(2, 5, side, side, dtype=F64)  # 5 channels of queries on a side x side token grid
        ours = (query_blur(side * side, sigma).double() @ q.reshape(2, 5, -1).transpose(1, 2)).transpose(1, 2)
        torch.testing.assert_close(ours.reshape(q.shape), seg_blur_transcribed(q, sigma), rtol=0, atol=1e-12)
    B = query_blur(16, 1e-3)
    assert torch.allclose(B, torch.eye(16, dtype=F64), atol=1e-6)  # a tiny blur changes nothing
    B = query_blur(9, 1.0)
    assert torch.allclose(B.sum(1), torch.ones(9, dtype=F64)) and B[4, 4] > B[4, 0]  # 3x3 grid: the centre's own weight is largest
    logits = torch.randn(2, 1, 9, 9)
    w = attention_weights(logits, Perturbation(mode="seg", blur=math.inf))
    assert torch.allclose(w, w[:, :, :1].expand_as(w))  # infinite blur: every query attends alike
    with pytest.raises(ValueError, match="blur"):
        query_blur(4, 0.0)


def test_weak_branch_guiders_on_the_attention_toy():
    model = toy_models.AttentionDenoiser(num_classes=2, width=16, depth=2).double()
    x = torch.randn(5, 2, dtype=F64)
    yy = torch.zeros(5, dtype=torch.long)
    with torch.no_grad():
        base = model(x, 0.5, yy)
        layers = ["net.blocks.0.attn", "net.blocks.1.attn"]
        assert torch.allclose(alt.SEG(model, layers, 1.0)(x, 0.5, yy), base, atol=1e-12)
        seg = alt.SEG(model, layers, 3.0)(x, 0.5, yy)
        assert not torch.allclose(seg, base)
        slg = alt.SkipLayerGuidance(model, ["net.blocks.1"], 3.0)
        with alt.skip_blocks(model, ["net.blocks.1"]):
            skipped = model(x, 0.5, yy)
        assert torch.allclose(slg(x, 0.5, yy), skipped + 3.0 * (base - skipped))
        tsg = alt.TSG(model, "net.noise", 3.0, scale=0.0)
        assert torch.allclose(tsg(x, 0.5, yy), base)  # no perturbation: the plain model
        tsg = alt.TSG(model, "net.noise", 3.0, scale=1.0)
        assert torch.equal(tsg(x, 0.5, yy), tsg(x, 0.5, yy))  # hashed noise: a function of its inputs
    with pytest.raises(ValueError, match="unknown block"):
        alt.SkipLayerGuidance(model, ["net.blocks.7"], 2.0)
    with pytest.raises(ValueError, match="output shape"):
        with torch.no_grad(), alt.skip_blocks(model, ["net.out.1"]):  # 16 -> 2 channels: not skippable
            model(x, 0.5, yy)


def test_cfgpp_one_step_and_ddim_form():
    x = torch.randn(3, 2, dtype=F64)
    sig = torch.tensor([0.8, 0.3, 0.0], dtype=F64)
    lam = 0.6
    dc, du = 0.5 * x + Linear.a, 0.2 * x + Linear.b
    x1 = du + lam * (dc - du) + 0.3 * (x - du) / 0.8
    dc1, du1 = 0.5 * x1 + Linear.a, 0.2 * x1 + Linear.b
    assert torch.allclose(samplers.cfgpp_euler(D, lam, x, sig, Y), du1 + lam * (dc1 - du1))
    abar = torch.linspace(0.999, 0.01, 100, dtype=F64)
    x_T = torch.randn(3, 2, dtype=F64)
    ts = torch.linspace(99, 0, 10).round().long()
    s = torch.cat([((1 - abar[ts]) / abar[ts]).sqrt(), torch.zeros(1, dtype=F64)])
    assert torch.allclose(samplers.cfgpp_ddim(D, lam, x_T, abar, Y, steps=10), samplers.cfgpp_euler(D, lam, x_T / abar[99].sqrt(), s, Y))
    with pytest.raises(ValueError, match="labels y"):
        samplers.cfgpp_euler(D, lam, x, sig, None)


def test_schedules_compose():
    s = torch.tensor([0.1, 0.5, 3.0])
    assert torch.equal(schedules.combine(4.0, schedules.interval(0.28, 2.9))(s), torch.tensor([1.0, 4.0, 1.0], dtype=F64))
    sig = samplers.edm_sigmas(10)
    on = schedules.steps_fraction(sig, 0.2, 0.5)(sig[:-1])  # steps 2, 3, 4 of 10
    assert on.tolist() == [0, 0, 1, 1, 1, 0, 0, 0, 0, 0]
    sig28 = samplers.edm_sigmas(28)  # diffusers floors: stop 0.2 of 28 steps guides steps 0-4 (int(5.6) = 5 of them)
    assert schedules.steps_fraction(sig28, 0.0, 0.2)(sig28[:-1]).sum().item() == 5
    off = schedules.zero_init(sig, 0.1)(sig[:-1])
    assert off.tolist() == [0] + [1] * 9
    both = schedules.combine(3.0, schedules.interval(0.0, 30.0), schedules.zero_init(sig, 0.1))
    assert both(sig[:3]).tolist() == [1.0, 1.0, 3.0]  # sigma[0] is zero-init's first step, sigma[1] = 42 is above 30
    g = guiders.CFG(D, schedules.combine(3.0, schedules.interval(0.28, 2.9)))
    assert torch.allclose(g(X, 0.5, Y), cfg(3.0)) and torch.allclose(g(X, 5.0, Y), DC)
    with pytest.raises(ValueError, match="start < stop"):
        schedules.steps_fraction(sig, 0.5, 0.2)


def test_pcg_matched_step_is_half_the_variance_decrement():
    gm_D = lambda x, s, y: x / (1 + torch.as_tensor(s) ** 2)  # the denoiser of N(0, I)
    sig = torch.tensor([2.0, 1.0, 0.0], dtype=F64)
    x = torch.randn(5, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    out = samplers.pcg(gm_D, gm_D, x, sig, None, corrector_steps=1, delta=None, generator=torch.Generator().manual_seed(1))
    z = torch.randn(5, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    x1 = x + (1.0 - 2.0) * (x - gm_D(x, 2.0, None)) / 2.0  # predictor 2 -> 1
    eps = (2.0**2 - 1.0**2) / 2
    x1 = x1 + eps * (gm_D(x1, 1.0, None) - x1) / 1.0 + (2 * eps) ** 0.5 * z  # corrector at sigma 1
    x2 = x1 + (0.0 - 1.0) * (x1 - gm_D(x1, 1.0, None)) / 1.0  # last step to 0: no corrector
    torch.testing.assert_close(out, x2)


def test_cfgpp_on_euler_steps_is_cfg_with_a_step_dependent_scale():
    sig = samplers.edm_sigmas(12)
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(3), dtype=F64) * 80.0
    yy = torch.zeros(6, dtype=torch.long)
    for lam in (0.0, 0.4, 1.0):
        a = samplers.cfgpp_euler(D, lam, x, sig, yy)
        b = samplers.edm_euler(guiders.CFG(D, schedules.cfgpp_scale(sig, lam)), x, sig, yy)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    w = schedules.cfgpp_scale(sig, 0.5)
    assert w(sig[-2]).item() == pytest.approx(0.5)  # the last step, to sigma = 0: w = lam
    assert w(sig[0]).item() == pytest.approx(0.5 * sig[0] / (sig[0] - sig[1]))
    with pytest.raises(ValueError, match="not a noise level of its schedule"):
        w(torch.tensor(3.3))


def test_flow_velocity_round_trip():
    from course import conversions as cv

    x, x0 = torch.randn(4, 3, dtype=F64), torch.randn(4, 3, dtype=F64)
    sigma = torch.tensor([0.1, 1.0, 5.0, 80.0], dtype=F64)
    v = cv.flow_velocity_from_x0(x, x0, sigma)
    t = (sigma / (1 + sigma)).reshape(-1, 1)
    eps = (x - x0) / sigma.reshape(-1, 1)
    assert torch.allclose(v, eps - x0)  # rectified flow's v = eps - x0
    assert torch.allclose((1 - t) * x, (1 - t) * x0 + t * eps)  # x_t = (1 - t) x0 + t eps is the VE x scaled
    assert torch.allclose(cv.x0_from_flow_velocity(x, v, sigma), x0)


def test_loss_guidance_is_the_chain_rule_through_the_denoiser_and_names_bad_losses():
    from course import alternatives as alt, presets

    moons = presets.two_moons()
    x = torch.randn(6, 2, dtype=torch.float64)
    loss = lambda x0: ((x0 - torch.tensor([1.0, -0.5], dtype=x0.dtype)) ** 2).sum(1) / 2  # noqa: E731
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(loss(moons(xr, 0.4)).sum(), xr)
    want = moons(x, 0.4) - 2.5 * 0.4**2 * g
    assert torch.allclose(alt.LossGuidance(moons, loss, 2.5)(x, 0.4), want, atol=1e-12)
    assert torch.allclose(alt.LossGuidance(moons, loss, 0.0)(x, 0.4), moons(x, 0.4))  # w = 0: no guidance
    given = alt.LossGuidance(moons, loss, 2.5, loss_grad=lambda D: D - torch.tensor([1.0, -0.5], dtype=D.dtype))
    assert torch.allclose(given(x, 0.4), want, atol=1e-12)
    with pytest.raises(ValueError, match="does not depend differentiably"):
        alt.LossGuidance(moons, lambda x0: (x0[:, 0] > 0).double(), 1.0)(x, 0.4)
    with pytest.raises(ValueError, match=r"one number per sample, shape \[6\]"):
        alt.LossGuidance(moons, lambda x0: x0.sum(), 1.0)(x, 0.4)
