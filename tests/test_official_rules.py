"""ImageNet-64 as the official code does it: the guidance interval decided per Heun step,
each family's pixel conversion, guided-diffusion's fp16 conversion plan, and the loader on a file
in the release format (fast, fp16 kept, the same numbers)."""
import pickle

import pytest
import torch

from course import checkpoints, samplers, schedules
from course.imagenet import loading, presets
from course.imagenet.adm import ADMClassifier, ADMUNet
from course.imagenet.edm2 import EDM2Denoiser
from edm2_format import NEVER_RUN_SOURCE, write_edm2_pickle
from test_imagenet import TINY_ADM, TINY_CLF, TINY_EDM2  # the tiny configurations of the ImageNet tests



# --- 1. the guidance interval, per step -------------------------------------------------------------------
def interval_preset():
    """The interval preset on tiny networks, with the zero-initialised gains (EDM2 starts with its
    output gain at 0, so that every fresh network is D = c_skip x) set to 1, so that main and guide differ."""
    D, _ = presets.build("edm2-s-autoguidance-interval", tiny=True)
    with torch.no_grad():
        for net in (D.D_main, D.D_guide):
            for p in net.parameters():
                if p.ndim == 0:
                    p.fill_(1.0)
    return D


def interval_sampler_transcribed(cond, uncond, latents, labels, w, start, stop, num_steps):
    """The guidance-interval paper's EDM sampler as published (S_churn = 0), transcribed: the
    guided denoiser (uncond.lerp(cond, w)) on the steps start <= i <= stop, cond alone on the
    others - the same denoiser for both calls of a step."""
    t = samplers.edm_sigmas(num_steps)
    x_next = latents.to(torch.float64) * t[0]
    for i, (t_cur, t_next) in enumerate(zip(t[:-1], t[1:])):
        if start <= i <= stop:
            def denoise(x, s):
                return uncond(x, s, labels).to(torch.float64).lerp(cond(x, s, labels).to(torch.float64), w)
        else:
            def denoise(x, s):
                return cond(x, s, labels).to(torch.float64)
        x_cur = x_next
        d_cur = (x_cur - denoise(x_cur, t_cur)) / t_cur
        x_next = x_cur + (t_next - t_cur) * d_cur
        if i < num_steps - 1:
            d_prime = (x_next - denoise(x_next, t_next)) / t_next
            x_next = x_cur + (t_next - t_cur) * (0.5 * d_cur + 0.5 * d_prime)
    return x_next


@pytest.mark.parametrize("steps", [4, 12, 32])
def test_per_step_guidance_is_the_interval_papers_sampler(steps):
    from course import guiders

    lo, hi = presets.PRESETS["edm2-s-autoguidance-interval"]["interval"]
    w = presets.PRESETS["edm2-s-autoguidance-interval"]["w"]

    def main(x, s, y):  # two float64 denoisers that disagree, so that guidance moves the result
        return torch.tanh(x) / (1 + torch.as_tensor(s) ** 2) ** 0.5 + 0.1 * y.reshape(-1, 1, 1, 1)

    def guide(x, s, y):
        return 0.8 * torch.tanh(1.2 * x) / (1 + torch.as_tensor(s) ** 2) ** 0.5

    sig = samplers.edm_sigmas(steps)
    guided = [i for i in range(steps) if lo < sig[i] <= hi]  # the steps whose t_cur lies in the interval
    labels = torch.tensor([3.0, 7.0], dtype=torch.float64)
    latents = samplers.randn((2, 3, 8, 8), [torch.Generator().manual_seed(s) for s in (0, 1)], torch.float64)
    x = samplers.edm_heun(guiders.Autoguidance(main, guide, w), latents * sig[0].item(), sig, labels, unguided=main,
                          guide_step=schedules.interval(lo, hi))
    ref = interval_sampler_transcribed(main, guide, latents, labels, w, guided[0] if guided else steps,
                                       guided[-1] if guided else -1, steps)
    torch.testing.assert_close(x, ref, rtol=1e-12, atol=1e-12)
    if steps == 32:
        assert guided == list(range(16, 23))  # (0.28, 2.90] at 32 steps: steps 16-22


def test_interval_preset_sample_uses_the_per_step_rule_and_differs_from_per_call():
    name = "edm2-s-autoguidance-interval"
    D = interval_preset()
    labels = torch.tensor([1])
    with torch.no_grad():
        per_step = presets.sample(name, D, labels, [torch.Generator().manual_seed(5)], steps=4)
        sig = samplers.edm_sigmas(4)
        noise = samplers.randn((1, 3, 64, 64), [torch.Generator().manual_seed(5)]) * sig[0].item()
        lo, hi = presets.PRESETS[name]["interval"]
        again = samplers.edm_heun(D, noise, sig, labels, unguided=D.D_main, guide_step=schedules.interval(lo, hi))
        from course import guiders
        per_call = samplers.edm_heun(guiders.Autoguidance(D.D_main, D.D_guide, schedules.combine(D.w, schedules.interval(lo, hi))),
                                     noise, sig, labels)
    assert torch.equal(per_step, again)
    # at 4 steps (sigma 80, 9.72, 0.47, 0.002) the rules differ: per call, step 1's second call (0.47)
    # is guided and step 2's second (0.002) is not; per step, step 1 is unguided and step 2 guided
    assert (per_step - per_call).abs().max() > 1e-3


def test_guide_step_needs_an_unguided_denoiser():
    with pytest.raises(ValueError, match="unguided"):
        samplers.edm_heun(lambda x, s, y: x, torch.zeros(1, 2), samplers.edm_sigmas(2), guide_step=lambda s: True)


# --- 2. pixels --------------------------------------------------------------------------------------------
def test_pixels_follow_each_familys_official_expression():
    x = torch.linspace(-1.2, 1.2, 100_001).reshape(1, 1, 1, -1)
    edm2_official = (x * 127.5 + 128).clip(0, 255).to(torch.uint8)  # generate_images.py
    adm_official = ((x + 1) * 127.5).clamp(0, 255).to(torch.uint8)  # classifier_sample.py
    assert torch.equal(presets.to_uint8(x, "edm2"), edm2_official)
    assert torch.equal(presets.to_uint8(x, "adm"), adm_official)
    inside = (x > -1) & (x < 1)
    one_up = (edm2_official.int() - adm_official.int())[inside]
    assert set(one_up.unique().tolist()) <= {0, 1} and 0.4 < one_up.float().mean() < 0.6
    assert presets.to_uint8(torch.tensor([-1.0]), "adm").item() == 0 and presets.to_uint8(torch.tensor([1.0]), "adm").item() == 255
    with pytest.raises(ValueError, match="unknown model family"):
        presets.to_uint8(x, "sd")


# --- 3. guided-diffusion's fp16 -----------------------------------------------------------------------------
def official_fp16_plan(model, parts):
    """guided-diffusion's rule, transcribed: convert_to_fp16 applies convert_module_to_f16 to the
    torso parts (UNet: input_blocks, middle_block, output_blocks; classifier: input_blocks,
    middle_block), which turns every Conv1d / Conv2d / Conv3d to fp16 and nothing else."""
    names = []
    for part in parts:
        for name, m in getattr(model, part).named_modules():
            if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
                names.append(f"{part}.{name}")
    return names


@pytest.mark.parametrize("cls, config, parts", [(ADMUNet, TINY_ADM, ("input_blocks", "middle_block", "output_blocks")),
                                                (ADMClassifier, TINY_CLF, ("input_blocks", "middle_block"))])
def test_fp16_conversion_plan_is_guided_diffusions(cls, config, parts):
    torch.manual_seed(0)
    model = cls(**config).eval()
    plan = model.fp16_plan()
    assert plan == official_fp16_plan(model, parts) and len(plan) > 10
    model.convert_to_fp16()
    in_plan = {f"{n}.{p}" for n in plan for p in ("weight", "bias")}
    for name, param in model.named_parameters():
        assert param.dtype == (torch.float16 if name in in_plan else torch.float32), name
    # what stays float32: embeddings, the ResBlocks' emb_layers, norms, the output head
    assert all(p.dtype == torch.float32 for n, p in model.named_parameters()
               if n.startswith(("time_embed", "label_emb", "out.")) or ".emb_layers." in n or "norm" in n or "in_layers.0" in n)
    # fp16 convolutions run on this CPU too: the output returns in float32, close to the fp32 one
    x = torch.randn(2, 3, 16, 16)
    t = torch.tensor([10.0, 700.0])
    args = (x, t, torch.tensor([1, 2])) if cls is ADMUNet else (x, t)
    with torch.no_grad():
        half = model(*args)
        full = model.convert_to_fp32()(*args)
    assert half.dtype == torch.float32 and 0 < (half - full).abs().max() < 0.05 * full.abs().max()


def test_adm_presets_convert_on_a_gpu_only():
    for name, p in presets.PRESETS.items():
        assert p.get("use_fp16", False) == (p["family"] == "adm"), name
    D, _ = presets.build("adm-cg-heun", tiny=True)
    assert presets.to_device(D, "adm-cg-heun", "cpu") == "float32"
    assert all(p.dtype == torch.float32 for m in presets.networks_of(D) for p in m.parameters())
    nets = {type(m).__name__ for m in presets.networks_of(D)}
    assert {"ADMDenoiser", "ADMClassifierOnSigma"} <= nets


# --- 4. the loader on the release format ----------------------------------------------------------------
def test_release_format_loads_with_fp16_kept_and_the_same_numbers(tmp_path):
    torch.manual_seed(0)
    model = EDM2Denoiser(**TINY_EDM2).eval()
    path = tmp_path / "edm2-img16-tiny-0000001-0.100.pkl"
    write_edm2_pickle(path, model, TINY_EDM2, released=True)
    assert path.read_bytes().count(NEVER_RUN_SOURCE.encode()) == 1  # one embedded source, referred to by every object
    kept = loading.load_edm2_pickle(path)
    as32 = loading.load_edm2_pickle(path, dtype=torch.float32)
    assert {p.dtype for p in kept.parameters()} == {torch.float16}
    assert {p.dtype for p in as32.parameters()} == {torch.float32}
    ref = EDM2Denoiser(**TINY_EDM2).eval()
    params = dict(model.named_parameters())
    ref.load_state_dict({k: v.half().float() if k in params else v for k, v in model.state_dict().items()})
    x, sigma, y = torch.randn(3, 3, 16, 16), torch.tensor([0.1, 1.0, 10.0]), torch.tensor([0, 4, 9])
    with torch.no_grad():
        a, b, c = kept(x, sigma, y), as32(x, sigma, y), ref(x, sigma, y)
    torch.testing.assert_close(b, c, rtol=0, atol=0)  # float32 weights: the same numbers as before
    torch.testing.assert_close(a, c, rtol=1e-3, atol=1e-3)  # fp16 gains: the official arithmetic, close


def test_weights_must_be_finite_floating_point():
    expected = {"w": torch.zeros(4)}
    for dtype in (torch.int64, torch.bool, torch.complex64, torch.uint8):
        with pytest.raises(ValueError, match=f"stored as {dtype}"):
            checkpoints.check_state({"w": torch.zeros(4, dtype=dtype)}, expected, "f")
    if hasattr(torch, "float8_e4m3fn"):
        with pytest.raises(ValueError, match="stored as torch.float8"):
            checkpoints.check_state({"w": torch.zeros(4, dtype=torch.float8_e4m3fn)}, expected, "f")
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match="NaN or inf"):
            checkpoints.check_state({"w": torch.tensor([1.0, bad, 2.0, 3.0]).half()}, expected, "f")
    big = torch.full((4,), 60000.0).half()  # finite, but their fp16 sum overflows: the exact test decides
    assert checkpoints.all_finite(big) and torch.isinf(big.sum())
    checkpoints.check_state({"w": big}, expected, "f")
    assert not checkpoints.all_finite(torch.tensor([float("inf"), -float("inf")]))  # inf - inf = nan: caught


def test_a_storage_record_that_asks_for_code_is_refused(tmp_path):
    import io

    marker = tmp_path / "pwned"

    class Boom:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    blob = io.BytesIO()
    for part in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
        pickle.dump(part, blob)
    pickle.dump(Boom(), blob)
    with pytest.raises(loading.RefusedPickle, match="refused"):
        loading._storage_from_bytes(blob.getvalue())
    assert not marker.exists()
    with pytest.raises(ValueError, match="unknown format"):
        loading._storage_from_bytes(pickle.dumps(1) * 5)
