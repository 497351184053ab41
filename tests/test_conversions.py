"""Changes of parameterisation: eps <-> x0 <-> score, VP timesteps <-> sigma."""
import torch
from safetensors.torch import load_file

from course import conversions as cv
from course import presets
from conftest import ROOT


def test_eps_x0_score_round_trips():
    x, x0 = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    sigma = torch.tensor([0.1, 0.5, 1.0, 2.0, 10.0], dtype=torch.float64)
    eps = cv.eps_from_x0(x, x0, sigma)
    torch.testing.assert_close(cv.x0_from_eps(x, eps, sigma), x0)
    score = cv.score_from_x0(x, x0, sigma)
    torch.testing.assert_close(cv.x0_from_score(x, score, sigma), x0)
    torch.testing.assert_close(cv.score_from_eps(eps, sigma), score)


def test_seed_identity_score_is_minus_eps_over_sqrt_one_minus_abar():
    gm = presets.ring()
    for abar in (0.99, 0.5, 0.01):
        sigma = cv.sigma_from_abar(abar).item()
        x_t = torch.randn(20, 2, dtype=torch.float64, requires_grad=True)
        log_p = gm.log_prob(x_t / abar**0.5, sigma)  # the Jacobian term is constant in x_t
        (vp_score,) = torch.autograd.grad(log_p.sum(), x_t)
        x = (x_t / abar**0.5).detach()
        eps = cv.eps_from_x0(x, gm.denoise(x, sigma), sigma)
        torch.testing.assert_close(cv.vp_score_from_eps(eps, abar), vp_score)


def test_cosine_schedule_matches_the_official_values():
    io = load_file(str(ROOT.parent / "shared" / "conformance" / "adm_shared_io.safetensors")) if (ROOT.parent / "shared").exists() else None
    betas = cv.cosine_betas(1000)
    if io is not None:
        torch.testing.assert_close(betas, io["cosine_betas"].double(), rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(cv.alphas_cumprod(betas), io["cosine_alphas_cumprod"].double(), rtol=1e-12, atol=1e-15)
    assert betas.max() <= 0.999 and betas.min() > 0


def test_sigma_abar_and_timestep_inverses():
    abar = cv.alphas_cumprod(cv.linear_betas())
    sig = cv.sigma_from_abar(abar)
    torch.testing.assert_close(cv.abar_from_sigma(sig), abar)
    t = cv.timestep_from_sigma(sig[[0, 10, 500, 999]], abar)
    torch.testing.assert_close(t, torch.tensor([0.0, 10.0, 500.0, 999.0], dtype=torch.float64))


def test_eps_denoiser_wraps_an_eps_network_exactly():
    """An eps-network that returns the exact E[eps | x_t] gives the exact denoiser."""
    gm = presets.ring()
    abar = cv.alphas_cumprod(cv.linear_betas())

    def exact_eps(x_t, t, y=None):
        ab = abar[t.long()].reshape(-1, 1)  # integer timesteps (round_timesteps=True below)
        x = x_t / ab.sqrt()
        sigma = cv.sigma_from_abar(ab).reshape(-1)
        return cv.eps_from_x0(x, gm.denoise(x, sigma), sigma)

    D = cv.EpsDenoiser(exact_eps, abar, round_timesteps=True)
    x = torch.randn(8, 2, dtype=torch.float64)
    sigma = cv.sigma_from_abar(abar[300]).item()  # a sigma on the table: t is an integer
    torch.testing.assert_close(D(x, sigma), gm.denoise(x, sigma))
