"""Check our ImageNet-64 networks against the official ones' outputs.

    python -m course.conformance ../shared/conformance [--tolerance 1e-4]

Reads every ``*.json`` case in the folder (format: shared/conformance/README.md): an EDM2 case
(``constructor``) with ``NAME_weights`` and ``NAME_io`` safetensors, or an ADM case
(``unet_constructor``, ``classifier_constructor``) with unet/classifier weights and io. Builds our
networks from the JSON's constructor fields, loads the weights, recomputes every stored output and
prints its relative error, max |ours - official| / max |official|. Exits 1 if any exceeds the
tolerance (default 1e-4) or is NaN, or if a case cannot be read (corrupt JSON, a missing or
truncated file, a missing key, a NaN weight: one line names the file and what is wrong); 2 if the
folder holds no case.

Precision: both sides here run in float32 from the same fp16-rounded weights, so agreement is
~1e-6 relative. The released EDM2 checkpoints store fp16 parameters, and the official code, run
on them as stored, computes parts of its weight normalisation and the embedding gain in fp16:
against such outputs expect ~2.5e-4 relative (measured: ours is within 8e-7 of a float64
evaluation, the official fp16 path 2.4e-4 from it). Compare with official outputs computed in
float32 parameters, as these vectors are, for a 1e-4 tolerance.
"""
import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from . import conversions as cv
from .attention import perturb_attention
from .imagenet.adm import ADMClassifier, ADMUNet
from .checkpoints import build_checked
from .imagenet.loading import load_edm2_safetensors


class CaseError(ValueError):
    """A conformance case that cannot be read: the message names the file and what is wrong."""


def relative_error(ours, ref):
    """max |ours - ref| / max |ref|; NaN if either side holds a NaN or inf (a NaN must never pass)."""
    ours, ref = ours.detach().double(), ref.detach().double()
    if ours.shape != ref.shape:
        raise ValueError(f"shape {list(ours.shape)} differs from the official {list(ref.shape)}")
    if not (torch.isfinite(ours).all() and torch.isfinite(ref).all()):
        return float("nan")
    return ((ours - ref).abs().max() / ref.abs().max().clamp(min=1e-30)).item()


def passes(err, tolerance):
    """True only for a finite error within the tolerance (``nan <= t`` is False, so NaN fails)."""
    return err <= tolerance


def read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CaseError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CaseError(f"{path}: not valid JSON ({err})") from None


def read_tensors(path, need=()):
    """A safetensors file as a dict, with a one-line error for a missing, truncated or incomplete file."""
    path = Path(path)
    if not path.is_file():
        raise CaseError(f"{path}: file not found")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CaseError(f"{path}: not a readable safetensors file ({err}); truncated or corrupt?") from None
    missing = [k for k in need if k not in tensors]
    if missing:
        raise CaseError(f"{path}: missing {missing}; it has {sorted(tensors)}")
    return tensors


def check_edm2(case, folder):
    spec = read_json(folder / f"{case}.json")
    if not isinstance(spec.get("constructor"), dict):
        raise CaseError(f"{folder / f'{case}.json'}: 'constructor' must be a mapping of constructor arguments")
    try:
        model = load_edm2_safetensors(folder / f"{case}_weights.safetensors", spec["constructor"])
    except FileNotFoundError as err:
        raise CaseError(str(err)) from None
    except (TypeError, SafetensorError, OSError) as err:
        raise CaseError(f"{folder / f'{case}_weights.safetensors'}: {err}") from None
    io = read_tensors(folder / f"{case}_io.safetensors", need=("x", "sigma", "class_labels", "D"))
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
        if single is not None and single not in model.attention_blocks():
            raise CaseError(f"{folder / f'{case}.json'}: 'pag_single_block' is {single!r}; it must name one of the network's "
                            f"attention blocks {model.attention_blocks()}")
        key = f"D_pag_{single.split('.', 1)[-1].replace('.', '_')}" if single else None
        if key in io:
            with perturb_attention(model, [single]):
                out[key] = relative_error(model(x, sigma, labels), io[key])
    return out


def _load_adm(cls, constructor, path):
    """An ADM network from a constructor dict and a state dict file: same keys, shapes, finite."""
    if not isinstance(constructor, dict):
        raise CaseError(f"{path}: the case's constructor must be a mapping of arguments")
    state = read_tensors(path)
    try:  # bounded, then built on the meta device and checked before any memory is used
        return build_checked(cls, constructor, state, path, assign=True).float().eval()
    except ValueError as err:
        raise CaseError(str(err)) from None


def check_adm(case, folder):
    spec = read_json(folder / f"{case}.json")
    io = read_tensors(folder / f"{case}_io.safetensors", need=("x", "timesteps", "y", "unet_out", "classifier_logits",
                                                                 "classifier_grad_log_prob_y"))
    out = {}
    unet = _load_adm(ADMUNet, spec.get("unet_constructor"), folder / f"{case}_unet_weights.safetensors")
    clf = _load_adm(ADMClassifier, spec.get("classifier_constructor"), folder / f"{case}_classifier_weights.safetensors")
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
    """{case: {output: relative error}} for every case in ``folder``; a case that cannot be read
    maps to its :class:`CaseError` instead."""
    folder = Path(folder)
    results = {}
    for spec_path in sorted(folder.glob("*.json")):
        case = spec_path.stem
        try:
            if not spec_path.is_file():
                raise CaseError(f"{spec_path}: a folder (or not a regular file), not a case; a case is a JSON file")
            spec = read_json(spec_path)
            if not isinstance(spec, dict):
                raise CaseError(f"{spec_path}: expected a JSON object with a 'constructor' or 'unet_constructor'")
            if "constructor" in spec:
                results[case] = check_edm2(case, folder)
            elif "unet_constructor" in spec:
                results[case] = check_adm(case, folder)
            else:  # never skipped: a case that checks nothing must not let the folder pass
                raise CaseError(f"{spec_path}: neither 'constructor' (an EDM2 case) nor 'unet_constructor' (an ADM case); "
                                f"it has {sorted(spec)[:8]}")
        except CaseError as err:
            results[case] = err
        except (ValueError, TypeError, KeyError, RuntimeError) as err:  # e.g. a constructor our networks reject
            results[case] = CaseError(f"{spec_path}: {type(err).__name__}: {err}")
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
    worst, failed = 0.0, []
    for case, outputs in results.items():
        if isinstance(outputs, CaseError):
            print(f"{case}: error: {outputs}")
            failed.append(case)
            continue
        print(f"{case}:")
        for name, err in outputs.items():
            ok = passes(err, args.tolerance)
            print(f"  {name:32s} max relative error {err:.2e}  {'ok' if ok else 'FAIL'}")
            if not ok:
                failed.append(f"{case}.{name}")
            if err == err:  # NaN is reported by name, not folded into the maximum
                worst = max(worst, err)
    if failed:
        print(f"FAIL: {len(failed)} output(s) or case(s) fail: {', '.join(failed)} "
              f"(worst finite relative error {worst:.2e}, tolerance {args.tolerance:g})")
        return 1
    print(f"worst relative error {worst:.2e} (tolerance {args.tolerance:g}): pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())
