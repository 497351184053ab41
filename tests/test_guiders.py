"""Guiders: each formula on denoisers with known outputs, the neutral w, exactness of CG on the
mixture, batched == separate branches, and clear errors for unknown PAG layers."""
import pytest
import torch

from course import guiders, presets, toy_models
from course.attention import Perturbation, attention_weights, perturb_attention

X = torch.randn(6, 2, dtype=torch.float64)
Y = torch.tensor([0, 1, 0, 1, 1, 0])


def labelled_constant(cond, uncond):
    """A denoiser that returns `cond` for a real label and `uncond` for the null label (-1)."""
    def D(x, sigma, y=None):
        y = torch.full((x.shape[0],), -1) if y is None else torch.as_tensor(y).expand(x.shape[0])
        return torch.where((y >= 0).unsqueeze(1), torch.tensor(cond, dtype=x.dtype), torch.tensor(uncond, dtype=x.dtype)).expand_as(x).clone()
    return D


@pytest.mark.parametrize("batched", [True, False])
def test_cfg_formula(batched):
    D = labelled_constant([1.0, 2.0], [0.0, -1.0])
    out = guiders.CFG(D, 3.0, batched=batched)(X, 0.5, Y)
    torch.testing.assert_close(out, torch.tensor([0.0, -1.0], dtype=torch.float64) + 3.0 * torch.tensor([1.0, 3.0], dtype=torch.float64).expand(6, 2))


def test_cfg_conventions_convert():
    D = labelled_constant([1.0, 2.0], [0.0, -1.0])
    w_orig = 2.0  # D_c + w'(D_c - D_u)
    original = torch.tensor([1.0, 2.0]) + w_orig * torch.tensor([1.0, 3.0])
    torch.testing.assert_close(guiders.CFG(D, guiders.w_from_original(w_orig))(X, 0.5, Y), original.double().expand(6, 2))
    assert guiders.w_to_original(guiders.w_from_original(0.7)) == pytest.approx(0.7)


def test_autoguidance_formula():
    main = lambda x, s, y=None: torch.full_like(x, 2.0)
    guide = lambda x, s, y=None: torch.full_like(x, 0.5)
    torch.testing.assert_close(guiders.Autoguidance(main, guide, 3.0)(X, 0.2, Y), torch.full_like(X, 0.5 + 3.0 * 1.5))


def test_classifier_guidance_formula_with_autograd():
    c = torch.tensor([0.3, -0.7], dtype=torch.float64)
    classifier = lambda x, s, y: (x * c).sum(1)  # log p(y | x) = c . x  ->  gradient c
    D = lambda x, s, y=None: torch.zeros_like(x)
    out = guiders.ClassifierGuidance(D, classifier, 2.0)(X, 0.5, Y)
    torch.testing.assert_close(out, (2.0 * 0.25 * c).expand(6, 2))


def test_cg_with_exact_posterior_at_w_1_is_the_exact_conditional_denoiser():
    gm = presets.two_moons()
    for sigma in (0.01, 0.2, 1.0, 4.0):
        for grad in (None, gm.grad_log_class_prob):  # autograd and the closed form
            cg = guiders.ClassifierGuidance(gm, gm.log_class_prob, 1.0, grad=grad)
            torch.testing.assert_close(cg(X, sigma, Y), gm(X, sigma, Y), rtol=1e-7, atol=1e-9)


def tiny_attention_model():
    torch.manual_seed(0)
    return toy_models.AttentionDenoiser(num_classes=2, width=16, depth=2, heads=2).double().eval()


@pytest.mark.parametrize("name, make", [
    ("cfg", lambda D: guiders.CFG(D, 1.0)),
    ("autoguidance", lambda D: guiders.Autoguidance(D, lambda x, s, y=None: x * 0 + 5, 1.0)),
    ("pag", lambda D: guiders.PAG(D, ["net.blocks.0.attn"], 1.0)),
    ("cg", lambda D: guiders.ClassifierGuidance(D, lambda x, s, y: (x**2).sum(1), 0.0, conditional=True)),
])
def test_neutral_w_returns_the_unguided_denoiser(name, make):
    D = tiny_attention_model()
    with torch.no_grad():
        torch.testing.assert_close(make(D)(X, 0.7, Y), D(X, 0.7, Y))


def test_pag_formula_and_batched_equals_separate():
    D = tiny_attention_model()
    layers = ["net.blocks.0.attn", "net.blocks.1.attn"]
    with torch.no_grad():
        clean = D(X, 0.7, Y)
        with perturb_attention(D, layers):
            ptb = D(X, 0.7, Y)
        assert (clean - ptb).abs().max() > 1e-3  # the perturbation does something
        want = ptb + 2.5 * (clean - ptb)
        torch.testing.assert_close(guiders.PAG(D, layers, 2.5)(X, 0.7, Y), want)
        torch.testing.assert_close(guiders.PAG(D, layers, 2.5, batched=False)(X, 0.7, Y), want)
        # with CFG: D_u + cfg (D_c - D_u) + (w - 1)(D_c - D_ptb)
        uncond = D(X, 0.7, None)
        both = uncond + 2.0 * (clean - uncond) + 1.5 * (clean - ptb)
        torch.testing.assert_close(guiders.PAG(D, layers, 2.5, cfg=2.0)(X, 0.7, Y), both)
        torch.testing.assert_close(guiders.PAG(D, layers, 2.5, cfg=2.0, batched=False)(X, 0.7, Y), both)


def test_unknown_pag_layer_names_the_valid_ones():
    D = tiny_attention_model()
    with pytest.raises(ValueError, match=r"unknown attention layer\(s\) \['blocks.1'\].*net.blocks.0.attn.*net.blocks.1.attn"):
        guiders.PAG(D, ["blocks.1"], 2.0)
    with pytest.raises(TypeError, match="list of names"):
        guiders.PAG(D, "net.blocks.0.attn", 2.0)


def test_guidance_interval_switches_w_by_sigma():
    D = labelled_constant([1.0, 1.0], [0.0, 0.0])
    g = guiders.CFG(D, guiders.guidance_interval(4.0, 0.3, 2.0))
    assert g(X, 1.0, Y)[0, 0] == 4.0 and g(X, 0.1, Y)[0, 0] == 1.0 and g(X, 5.0, Y)[0, 0] == 1.0
    per_row = g(X, torch.tensor([0.1, 1.0, 5.0, 1.0, 0.2, 2.0], dtype=torch.float64), Y)[:, 0]
    torch.testing.assert_close(per_row, torch.tensor([1.0, 4.0, 1.0, 4.0, 1.0, 4.0], dtype=torch.float64))


def test_bad_w_and_missing_labels_are_explained():
    D = labelled_constant([1.0, 1.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="finite"):
        guiders.CFG(D, float("nan"))
    with pytest.raises(ValueError, match="needs the labels"):
        guiders.CFG(D, 2.0)(X, 0.5, None)


def test_attention_perturbations():
    logits = torch.randn(3, 2, 5, 5)
    eye = torch.eye(5).expand(3, 2, 5, 5)
    torch.testing.assert_close(attention_weights(logits, Perturbation("identity")), eye)
    rows = torch.tensor([True, False, True])
    w = attention_weights(logits, Perturbation("identity", rows))
    torch.testing.assert_close(w[1], torch.softmax(logits[1], -1))
    torch.testing.assert_close(w[0], eye[0])
    g = torch.Generator().manual_seed(0)
    for mode in ("random", "offdiag"):
        w = attention_weights(logits, Perturbation(mode, ratio=0.9, generator=g))
        torch.testing.assert_close(w.sum(-1), torch.ones(3, 2, 5))  # still distributions, never NaN
        assert ((w == 0).float().mean() > 0.5)
    w = attention_weights(logits, Perturbation("offdiag", ratio=1.0, generator=g))
    torch.testing.assert_close(w, eye)  # masking every off-diagonal entry is the identity


def test_icg_uses_random_labels_as_the_unconditional_branch():
    seen = []

    def D(x, sigma, y=None):
        seen.append(torch.as_tensor(y).clone())
        return torch.as_tensor(y, dtype=x.dtype).reshape(-1, 1).expand_as(x).clone()

    out = guiders.IndependentConditionGuidance(D, 2.0, num_classes=1000, seed=0, batched=False)(X, 0.5, Y)
    rand = seen[1]
    assert not torch.equal(rand, Y) and rand.min() >= 0 and rand.max() < 1000
    torch.testing.assert_close(out, (rand + 2.0 * (Y - rand)).double().reshape(-1, 1).expand_as(X))
    batched = guiders.IndependentConditionGuidance(D, 2.0, num_classes=1000, seed=0)(X, 0.5, Y)
    torch.testing.assert_close(batched, out)  # the same random labels, one call


def test_guiders_refuse_a_part_that_would_be_broadcast():
    import pytest

    x = torch.randn(4, 2)
    main = lambda x_, s, y=None: x_ * 0.5  # noqa: E731
    one_row = lambda x_, s, y=None: x_[:1] * 0.1  # noqa: E731 - one prediction for a batch of four
    with pytest.raises(ValueError, match=r"the guide returned \[1, 2\] for x of shape \[4, 2\]"):
        guiders.Autoguidance(main, one_row, 2.0)(x, 0.5, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="no broadcasting"):
        guiders.CFG(lambda x_, s, y=None: x_[:1], 2.0)(x, 0.5, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="no broadcasting"):
        guiders.CFG(lambda x_, s, y=None: x_[:1], 2.0, batched=False)(x, 0.5, torch.zeros(4, dtype=torch.long))


def test_guiders_and_samplers_refuse_bad_numbers_with_a_clear_error():
    import math

    import pytest

    from course import alternatives as alt
    from course import samplers, schedules

    x, y = torch.randn(4, 2), torch.zeros(4, dtype=torch.long)
    D = lambda x_, s, y_=None: 0.5 * x_  # noqa: E731
    for bad_sigma in (float("nan"), -1.0, float("inf")):
        with pytest.raises(ValueError, match="sigma must be finite and >= 0"):
            guiders.CFG(D, 2.0)(x, bad_sigma, y)
    with pytest.raises(ValueError, match="3 labels for a batch of 4"):
        guiders.CFG(D, 2.0)(x, 0.5, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="needs sigma > 0"):
        alt.CFGZeroStar(D, 2.0)(x, 0.0, y)
    for kwargs, what in ((dict(r=math.nan), "norm threshold"), (dict(beta=math.nan), "beta"), (dict(eta=math.nan), "eta")):
        with pytest.raises(ValueError, match=what):
            alt.APG(D, 2.0, **kwargs)
    with pytest.raises(ValueError, match="alpha"):
        alt.MamboG(D, 2.0, alpha=math.nan)
    with pytest.raises(FloatingPointError, match="TCFG"):
        alt.TCFG(lambda x_, s, y_=None: x_ * math.nan, 2.0)(x, 0.5, y)
    nan_classifier = lambda x_, s, y_: (x_ * math.nan).sum(1)  # noqa: E731
    with pytest.raises(FloatingPointError, match="classifier's gradient is NaN"):
        guiders.ClassifierGuidance(D, nan_classifier, 2.0)(x, 0.5, y)
    with pytest.raises(ValueError, match="fraction"):
        schedules.zero_init(samplers.edm_sigmas(8), fraction=2)
    with pytest.raises(ValueError, match="n must be a whole number"):
        samplers.sample(D, -1, 2)
    with pytest.raises(ValueError, match="eta must be"):
        samplers.ddim(D, x, torch.linspace(0.99, 0.01, 100, dtype=torch.float64), eta=math.nan)
