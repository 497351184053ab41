"""Guided generation at ImageNet-64 as plain data, and the one place that finds checkpoints.

A preset names the checkpoint files, the guider and its scale, and the sampler settings
(Dhariwal & Nichol 2021, https://arxiv.org/abs/2105.05233; Karras et al. 2024,
https://arxiv.org/abs/2312.02696 and https://arxiv.org/abs/2406.02507; lesson 7). :func:`build` turns one into a guided denoiser made of the toy
lessons' guiders, unchanged. Checkpoints are looked up in a folder given as an argument or by
the environment variable ``COURSE_CHECKPOINTS``; nothing is ever downloaded.

Without the checkpoints, ``build(..., tiny=True)`` makes a tiny random-weight network of the same
classes instead, and says so: its pictures are noise by construction, the code path is the real one.
"""
import os
from pathlib import Path

import torch

from .. import alternatives, guiders, samplers, schedules
from . import guided_diffusion
from .adm import ADMClassifier, ADMClassifierOnSigma, ADMDenoiser, ADMUNet
from .edm2 import EDM2Denoiser
from .loading import load_adm_classifier, load_adm_unet, load_edm2_pickle

# The released files, as EDM2's generate_images.py names them for each ImageNet-64 preset (EDM2's
# release, https://github.com/NVlabs/edm2; lesson 7): the EMA length (last number) differs between the FID and the FD_DINOv2 presets.
EDM2_S_UNGUIDED = "edm2-img64-s-1073741-0.075.pkl"  # unguided FID preset
EDM2_S = "edm2-img64-s-1073741-0.045.pkl"  # autoguidance FID preset: main
EDM2_XS_GUIDE = "edm2-img64-xs-0134217-0.110.pkl"  # autoguidance FID preset: guide (XS, 1/8 of the training)
EDM2_S_DINO = "edm2-img64-s-1073741-0.105.pkl"  # autoguidance FD_DINOv2 preset: main
EDM2_XS_GUIDE_DINO = "edm2-img64-xs-0134217-0.175.pkl"  # autoguidance FD_DINOv2 preset: guide
ADM_UNET, ADM_CLASSIFIER = "64x64_diffusion.pt", "64x64_classifier.pt"
SAMPLER = dict(kind="edm_heun", steps=32, sigma_min=0.002, sigma_max=80.0, rho=7.0)  # 63 calls (126 with a guide)
ADM_SAMPLER = dict(kind="dhariwal_nichol", steps=250)  # guided-diffusion's own: learned variances, 250 respaced steps

PRESETS = {
    "edm2-s-unguided": dict(family="edm2", main=EDM2_S_UNGUIDED, guider=None, w=1.0, sampler=SAMPLER,
                            published={"FID": 1.58}, note="EDM2-S alone, EMA 0.075 (the unguided FID preset)"),
    "edm2-s-autoguidance-fid": dict(family="edm2", main=EDM2_S, guide=EDM2_XS_GUIDE, guider="autoguidance", w=1.70, sampler=SAMPLER,
                                    published={"FID": 1.01},
                                    note="S guided by XS trained 1/8 as long (EMA 0.045 / 0.110)"),
    "edm2-s-autoguidance-fd-dinov2": dict(family="edm2", main=EDM2_S_DINO, guide=EDM2_XS_GUIDE_DINO, guider="autoguidance", w=2.20,
                                          sampler=SAMPLER, published={"FD_DINOv2": 31.85},
                                          note="S guided by XS trained 1/8 as long (EMA 0.105 / 0.175), tuned for FD_DINOv2"),
    "edm2-s-autoguidance-interval": dict(family="edm2", main=EDM2_S, guide=EDM2_XS_GUIDE, guider="autoguidance", w=2.10,
                                         interval=(0.28, 2.90), sampler=SAMPLER, published={},
                                         note="autoguidance only for sigma in (0.28, 2.90], w 2.1: the guidance-interval paper's "
                                              "EDM2-S setting for CFG at ImageNet-512, applied to the 64 autoguidance pair "
                                              "(a departure; untested on a GPU)"),
    "edm2-s-autoguidance-fdg": dict(family="edm2", main=EDM2_S, guide=EDM2_XS_GUIDE, guider="fdg", w=3.0, w_low=1.0,
                                    sampler=SAMPLER, published={},
                                    note="frequency-decoupled autoguidance, w_low 1 / w_high 3: the FDG paper's EDM2-S setting "
                                         "for CFG, applied to the 64 autoguidance pair (a departure; untested on a GPU)"),
    "edm2-s-pag": dict(family="edm2", main=EDM2_S, guider="pag", w=2.0, layers=["unet.dec.8x8_in0"], sampler=SAMPLER,
                       published={}, note="no published preset (EDM2 has no PAG): the course's choice, to compare"),
    "adm-cg": dict(family="adm", main=ADM_UNET, classifier=ADM_CLASSIFIER, guider="cg", w=1.0, sampler=ADM_SAMPLER, use_fp16=True,
                   published={}, note="guided-diffusion's classifier sampling (its README's 64x64 command): classifier_scale 1.0, "
                                      "ancestral steps with learned variances, 250 respaced steps, guidance as a mean shift"),
    "adm-cg-heun": dict(family="adm", main=ADM_UNET, classifier=ADM_CLASSIFIER, guider="cg", w=1.0, sampler=SAMPLER, use_fp16=True,
                        published={}, note="the same model and scale on EDM Heun (32 steps) with the score form of guidance, "
                                           "D + w sigma^2 grad log p(y|x): the course's variant, not the paper's method"),
    "adm-unguided": dict(family="adm", main=ADM_UNET, guider=None, w=1.0, sampler=ADM_SAMPLER, use_fp16=True, published={"FID": 2.07},
                         note="ADM 64x64 alone on guided-diffusion's sampler (published FID 2.07, 'ADM (dropout)')"),
    "adm-icg": dict(family="adm", main=ADM_UNET, guider="icg", w=1.5, sampler=SAMPLER, use_fp16=True, published={},
                    note="independent condition guidance: CFG-like guidance without a null class; w is the course's choice"),
    "adm-pag": dict(family="adm", main=ADM_UNET, guider="pag", w=4.0, use_fp16=True,
                    layers=["unet.input_blocks.13.1", "unet.input_blocks.14.1", "unet.input_blocks.15.1", "unet.middle_block.1"],
                    sampler=SAMPLER, published={}, note="g = 4 as in the official PAG code for ADM, on the 8x8 attention blocks"),
}

# Tiny random-weight stand-ins with the same classes (used when checkpoints are absent, and in tests).
TINY_EDM2 = dict(img_resolution=64, img_channels=3, label_dim=1000, model_channels=16, channel_mult=[1, 2, 2, 2], num_blocks=1,
                 attn_resolutions=[16, 8], channels_per_head=16)
TINY_ADM = dict(image_size=64, model_channels=32, num_res_blocks=1, num_head_channels=32, attention_resolutions="32,16,8",
                channel_mult=(1, 1, 2, 2), num_classes=1000)
TINY_ADM_CLASSIFIER = dict(image_size=64, model_channels=32, num_res_blocks=1, num_head_channels=32, attention_resolutions="32,16,8",
                           channel_mult=(1, 1, 2, 2), out_channels=1000)


class GuidedDiffusionModel(torch.nn.Module):
    """The networks guided-diffusion's sampler needs: the ADM UNet (eps and learned variances),
    the classifier on x_t (or None) and the classifier scale."""

    def __init__(self, unet, classifier=None, scale=1.0):
        super().__init__()
        self.unet, self.classifier, self.scale = unet, classifier, scale


def networks_of(D):
    """Every ADM / EDM2 network module inside a built preset (a guider, a denoiser or a
    GuidedDiffusionModel), each once."""
    found, stack, seen = [], [D], set()
    while stack:
        obj = stack.pop()
        if id(obj) in seen or obj is None:
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.nn.Module):
            found.append(obj)
        elif hasattr(obj, "__dict__"):
            stack.extend(v for v in vars(obj).values() if isinstance(v, torch.nn.Module) or hasattr(v, "D"))
    return found


def to_device(D, preset, device):
    """Move a built preset's networks to ``device``; on a CUDA device an ADM preset with
    ``use_fp16`` (the published 64x64 commands' --use_fp16 True) converts its UNet's and
    classifier's torso to fp16 as guided-diffusion does. Returns the precision in words."""
    modules = networks_of(D)
    for m in modules:
        m.to(device)
    if PRESETS[preset].get("use_fp16") and str(device).startswith("cuda"):
        for m in modules:
            for net in m.modules():
                if isinstance(net, (ADMUNet, ADMClassifier)):
                    net.convert_to_fp16()
        return "fp16 torso (guided-diffusion's --use_fp16)"
    return "float32"


def to_uint8(x, family):
    """[-1, 1] images [N, 3, H, W] -> uint8 pixels, as each family's official code saves them:
    EDM2 (generate_images.py) x * 127.5 + 128, clipped, truncated; guided-diffusion
    (classifier_sample.py / image_sample.py) (x + 1) * 127.5, clamped, truncated - one level lower
    than EDM2's on about half the pixels."""
    if family == "edm2":
        return (x * 127.5 + 128).clip(0, 255).to(torch.uint8)
    if family == "adm":
        return ((x + 1) * 127.5).clamp(0, 255).to(torch.uint8)
    raise ValueError(f"unknown model family {family!r}; expected 'edm2' or 'adm'")


def no_guidance_w(preset):
    """The scale at which a preset's guider is the plain model: 1 (lerp convention), except
    classifier guidance on a conditional model, where w is classifier_scale and 0 is no guidance."""
    return 0.0 if PRESETS[preset]["guider"] == "cg" else 1.0


def sample(preset, D, labels, generator, device="cpu", progress=False, steps=None):
    """Images [N, 3, 64, 64] in [-1, 1] for ``labels`` [N] with the preset's sampler (``steps``
    overrides its number of steps); every random number comes from ``generator`` (CPU): one
    torch.Generator for the batch, or a list of one per image (then each image depends on its
    own generator alone, whatever batch it is in), so a batch is reproducible on any device."""
    s = dict(PRESETS[preset]["sampler"], **({"steps": steps} if steps else {}))
    n = len(labels)
    if s["kind"] == "edm_heun":
        sigmas = samplers.edm_sigmas(s["steps"], s["sigma_min"], s["sigma_max"], s["rho"])
        noise = samplers.randn((n, 3, 64, 64), generator).to(device) * sigmas[0].item()
        if "interval" in PRESETS[preset]:  # decided per step by the step's sigma, both Heun calls alike (its paper's sampler)
            return samplers.edm_heun(D, noise, sigmas, labels, unguided=D.D_main,
                                     guide_step=schedules.interval(*PRESETS[preset]["interval"]), progress=progress)
        return samplers.edm_heun(D, noise, sigmas, labels, progress=progress)
    if s["kind"] == "dhariwal_nichol":
        x_T = samplers.randn((n, 3, 64, 64), generator).to(device)
        return guided_diffusion.dhariwal_nichol(D.unet, x_T, labels, steps=s["steps"], classifier=D.classifier,
                                                scale=D.scale, generator=generator, progress=progress)
    raise ValueError(f"preset {preset!r} names an unknown sampler {s['kind']!r}")


def checkpoint_folder(folder=None) -> Path:
    """The folder argument, else $COURSE_CHECKPOINTS, else an error that says how to set it."""
    folder = folder or os.environ.get("COURSE_CHECKPOINTS")
    if not folder:
        raise FileNotFoundError("no checkpoint folder: pass one, or set COURSE_CHECKPOINTS to the folder that holds the "
                                "ImageNet-64 checkpoints (README, 'ImageNet-64: getting the checkpoints')")
    return Path(folder)


def find_checkpoint(name, folder=None) -> Path:
    """The path of checkpoint file ``name`` in the checkpoint folder, or a clear error."""
    path = checkpoint_folder(folder) / name
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {name} not found in {path.parent}. Download it from the official release "
                                f"(README, 'ImageNet-64: getting the checkpoints') into that folder.")
    return path


def files_of(preset):
    """Every checkpoint file a preset needs."""
    p = PRESETS[preset]
    return [p[k] for k in ("main", "guide", "classifier") if k in p]


def available(preset, folder=None) -> bool:
    """True if every checkpoint of ``preset`` is in the folder (False if no folder is set)."""
    try:
        return all(find_checkpoint(f, folder) for f in files_of(preset))
    except FileNotFoundError:
        return False


def _networks(p, folder, tiny, adm_config=None):
    """(main denoiser, guide denoiser or None, classifier or None) for a preset."""
    if p["family"] == "edm2":
        if tiny:
            torch.manual_seed(0)
            return EDM2Denoiser(**TINY_EDM2).eval(), (EDM2Denoiser(**TINY_EDM2).eval() if "guide" in p else None), None
        main = load_edm2_pickle(find_checkpoint(p["main"], folder))
        guide = load_edm2_pickle(find_checkpoint(p["guide"], folder)) if "guide" in p else None
        return main, guide, None
    if tiny:
        torch.manual_seed(0)
        unet = ADMUNet(**TINY_ADM).eval()
        clf = ADMClassifier(**TINY_ADM_CLASSIFIER).eval() if "classifier" in p else None
    else:
        unet_config = {k: v for k, v in (adm_config or {}).items() if k != "classifier"}
        unet = load_adm_unet(find_checkpoint(p["main"], folder), **unet_config)
        clf = load_adm_classifier(find_checkpoint(p["classifier"], folder), **(adm_config or {}).get("classifier", {})) if "classifier" in p else None
    return ADMDenoiser(unet), None, (ADMClassifierOnSigma(clf) if clf is not None else None)


def build(preset, folder=None, tiny=False, w=None, adm_config=None):
    """(guided denoiser, description) for ``preset``; ``w`` overrides the preset's scale.
    ``tiny=True`` uses random-weight tiny networks of the same classes (no checkpoints needed).
    ``adm_config`` overrides the ADM constructor (released 64x64 by default; key "classifier" for
    the classifier's) - for checkpoints of other sizes, and for tests."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; presets: {sorted(PRESETS)}")
    p = PRESETS[preset]
    w = p["w"] if w is None else w
    main, guide, clf = _networks(p, folder, tiny, adm_config)
    kind = p["guider"]
    if p["sampler"]["kind"] == "dhariwal_nichol":
        # guided-diffusion's sampler needs the raw networks (the UNet's learned variances, the
        # classifier on x_t): a GuidedDiffusionModel carries them; it is not a denoiser
        D = GuidedDiffusionModel(main.unet, clf.classifier if clf is not None else None, w if kind == "cg" else 0.0)
    elif kind is None:
        D = main
    elif kind == "autoguidance":
        D = guiders.Autoguidance(main, guide, w)  # an "interval" preset limits it per step in sample()
    elif kind == "fdg":
        D = alternatives.FDG(main, p["w_low"], w, guide=guide)
    elif kind == "pag":
        layers = p["layers"] if not tiny else [name for name in (main.attention_blocks()) if "8x8" in name or "middle" in name][:2]
        D = guiders.PAG(main, layers, w)
    elif kind == "cg":
        D = guiders.ClassifierGuidance(main, clf, w, conditional=True)
    elif kind == "icg":
        D = guiders.IndependentConditionGuidance(main, w, num_classes=1000)
    else:
        raise ValueError(f"preset {preset!r} names an unknown guider {kind!r}")
    where = "tiny random-weight stand-in (NOT the released model: its images are noise)" if tiny else f"checkpoints in {checkpoint_folder(folder)}"
    return D, f"{preset}: {kind or 'no guidance'} w={w:g}, {where}. {p['note']}"
