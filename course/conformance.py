"""Check our ImageNet-64 networks against the official ones' outputs.

    python -m course.conformance ../shared/conformance [--tolerance 1e-4]

Reads every ``*.json`` case in the folder (format: shared/conformance/README.md): an EDM2 case
(``constructor``) with ``NAME_weights`` and ``NAME_io`` safetensors, or an ADM case
(``unet_constructor``, ``classifier_constructor``) with unet/classifier weights and io. Builds our
networks from the JSON's constructor fields, loads the weights, recomputes every stored output and
prints its relative error, max |ours - official| / max |official|. Exits 1 if any exceeds the
tolerance (default 1e-4), 2 if the folder holds no case.
"""
import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from . import conversions as cv
from .attention import perturb_attention
from .imagenet.adm import ADMClassifier, ADMUNet
from .imagenet.loading import load_edm2_safetensors


def relative_error(ours, ref):
    ours, ref = ours.detach().double(), ref.detach().double()
    if ours.shape != ref.shape:
        raise ValueError(f"shape {list(ours.shape)} differs from the official {list(ref.shape)}")
    return ((ours - ref).abs().max() / ref.abs().max().clamp(min=1e-30)).item()


def check_edm2(case, folder):
    spec = json.loads((folder / f"{case}.json").read_text())
    model = load_edm2_safetensors(folder / f"{case}_weights.safetensors", spec["constructor"])
    io = load_file(str(folder / f"{case}_io.safetensors"))
    x, sigma, labels = io["x"], io["sigma"], io["class_labels"]
    if "num_params" in spec:
        n = sum(p.numel() for p in model.parameters())
        if n != spec["num_params"]:
            raise ValueError(f"{case}: our network has {n} parameters, the official one {spec['num_params']}")
    names = spec.get("attention_blocks")
    if names is not None and model.attention_blocks() != names:
        raise ValueError(f"{case}: attention blocks {model.attention_blocks()} differ from the official {names}")
    out = {}
    with torch.no_grad():
        out["D"] = relative_error(model(x, sigma, labels), io["D"])
        if "D_no_labels" in io:
            out["D_no_labels"] = relative_error(model(x, sigma, None), io["D_no_labels"])
        if "D_pag_all" in io:
            with perturb_attention(model, model.attention_blocks()):
                out["D_pag_all"] = relative_error(model(x, sigma, labels), io["D_pag_all"])
        single = spec.get("pag_single_block")
        key = f"D_pag_{single.split('.', 1)[1].replace('.', '_')}" if single else None
        if key in io:
            with perturb_attention(model, [single]):
                out[key] = relative_error(model(x, sigma, labels), io[key])
    return out


def check_adm(case, folder):
    spec = json.loads((folder / f"{case}.json").read_text())
    io = load_file(str(folder / f"{case}_io.safetensors"))
    out = {}
    unet = ADMUNet(**spec["unet_constructor"]).eval()
    unet.load_state_dict({k: v.float() for k, v in load_file(str(folder / f"{case}_unet_weights.safetensors")).items()})
    clf = ADMClassifier(**spec["classifier_constructor"]).eval()
    clf.load_state_dict({k: v.float() for k, v in load_file(str(folder / f"{case}_classifier_weights.safetensors")).items()})
    for name, model, key in [("unet", unet, "unet_params"), ("classifier", clf, "classifier_params")]:
        n = sum(p.numel() for p in model.parameters())
        if key in spec and n != spec[key]:
            raise ValueError(f"{case}: our {name} has {n} parameters, the official one {spec[key]}")
    x, t, y = io["x"], io["timesteps"], io["y"]
    with torch.no_grad():
        out["unet_out"] = relative_error(unet(x, t, y), io["unet_out"])
        if "unet_out_pag_all" in io:
            with perturb_attention(unet, unet.attention_blocks()):
                out["unet_out_pag_all"] = relative_error(unet(x, t, y), io["unet_out_pag_all"])
        if "unet_out_pag_middle_block" in io:
            with perturb_attention(unet, ["middle_block.1"]):
                out["unet_out_pag_middle_block"] = relative_error(unet(x, t, y), io["unet_out_pag_middle_block"])
        out["classifier_logits"] = relative_error(clf(x, t), io["classifier_logits"])
    xg = x.clone().requires_grad_(True)
    logp = torch.log_softmax(clf(xg, t), dim=-1).gather(1, y.reshape(-1, 1)).sum()
    (grad,) = torch.autograd.grad(logp, xg)
    out["classifier_grad_log_prob_y"] = relative_error(grad, io["classifier_grad_log_prob_y"])
    if "cosine_betas" in io:
        betas = cv.cosine_betas(len(io["cosine_betas"]))
        out["cosine_betas"] = relative_error(betas, io["cosine_betas"])
        out["cosine_alphas_cumprod"] = relative_error(cv.alphas_cumprod(betas), io["cosine_alphas_cumprod"])
    return out


def check_folder(folder):
    """{case: {output: relative error}} for every case in ``folder``."""
    folder = Path(folder)
    results = {}
    for spec_path in sorted(folder.glob("*.json")):
        spec = json.loads(spec_path.read_text())
        case = spec_path.stem
        if "constructor" in spec:
            results[case] = check_edm2(case, folder)
        elif "unet_constructor" in spec:
            results[case] = check_adm(case, folder)
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m course.conformance", description=__doc__.splitlines()[0])
    ap.add_argument("folder", help="a folder of conformance cases, e.g. ../shared/conformance")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    args = ap.parse_args(argv)
    folder = Path(args.folder)
    if not folder.is_dir():
        print(f"{folder} is not a folder", file=sys.stderr)
        return 2
    results = check_folder(folder)
    if not results:
        print(f"no conformance cases (*.json with a constructor) in {folder}", file=sys.stderr)
        return 2
    worst = 0.0
    for case, outputs in results.items():
        print(f"{case}:")
        for name, err in outputs.items():
            flag = "ok" if err <= args.tolerance else "FAIL"
            print(f"  {name:32s} max relative error {err:.2e}  {flag}")
            worst = max(worst, err)
    verdict = "pass" if worst <= args.tolerance else "FAIL"
    print(f"worst relative error {worst:.2e} (tolerance {args.tolerance:g}): {verdict}")
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
