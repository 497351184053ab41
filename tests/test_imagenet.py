"""The ImageNet-64 networks: conformance with the official outputs, safe loading of the released
formats, refusals with clear errors, and the denoiser interface on top."""
import json
import pickle
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from course import conformance, guiders
from course.attention import perturb_attention
from course.imagenet import loading
from course.imagenet.adm import ADMClassifier, ADMClassifierOnSigma, ADMDenoiser, ADMUNet
from course.imagenet.edm2 import EDM2Denoiser
from conftest import ROOT, run_main
from edm2_format import Payload, write_edm2_pickle

SHARED = ROOT.parent / "shared" / "conformance"
needs_shared = pytest.mark.skipif(not (SHARED / "edm2_shared.json").exists(),
                                  reason="../shared/conformance (the official outputs) is not beside this checkout")
TINY_EDM2 = dict(img_resolution=16, img_channels=3, label_dim=10, model_channels=16, channel_mult=[1, 2], num_blocks=1,
                 attn_resolutions=[8], channels_per_head=16)
TINY_ADM = dict(image_size=16, model_channels=32, num_res_blocks=1, num_head_channels=32, attention_resolutions="8",
                channel_mult=(1, 2), num_classes=10)
TINY_CLF = dict(image_size=16, model_channels=32, num_res_blocks=1, num_head_channels=32, attention_resolutions="8",
                channel_mult=(1, 2), out_channels=10)


@needs_shared
def test_conformance_command_passes_on_the_shared_vectors():
    out = subprocess.run([sys.executable, "-m", "course.conformance", str(SHARED)], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "pass" in out.stdout.splitlines()[-1]
    for name in ("D", "D_no_labels", "D_pag_all", "D_pag_dec_8x8_in0", "unet_out", "unet_out_pag_all",
                 "unet_out_pag_middle_block", "classifier_logits", "classifier_grad_log_prob_y", "cosine_betas"):
        assert f"  {name} " in out.stdout


def tiny_edm2(seed=0):
    torch.manual_seed(seed)
    model = EDM2Denoiser(**TINY_EDM2).eval()
    with torch.no_grad():  # the gains start at zero; make every layer matter
        for name, p in model.named_parameters():
            if name.endswith("gain"):
                p.fill_(0.7)
    return model


def write_edm2_case(folder, name, model, break_output=None):
    """A conformance case of our own network in the shared format (self-consistency)."""
    x = torch.randn(2, 3, 16, 16)
    sigma = torch.tensor([0.5, 3.0])
    labels = torch.nn.functional.one_hot(torch.tensor([1, 7]), 10).float()
    with torch.no_grad():
        io = {"x": x, "sigma": sigma, "class_labels": labels, "D": model(x, sigma, labels), "D_no_labels": model(x, sigma, None)}
        with perturb_attention(model, model.attention_blocks()):
            io["D_pag_all"] = model(x, sigma, labels)
    if break_output:
        io[break_output] = io[break_output] * 1.01
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / f"{name}_weights.safetensors"))
    save_file(io, str(folder / f"{name}_io.safetensors"))
    (folder / f"{name}.json").write_text(json.dumps({"constructor": TINY_EDM2, "attention_blocks": model.attention_blocks()}))


def test_conformance_command_reads_any_config_and_can_fail(tmp_path):
    write_edm2_case(tmp_path, "tiny", tiny_edm2())
    run = lambda: run_main(conformance.main, tmp_path)  # in this interpreter; the test above runs the real process
    out = run()
    assert out.returncode == 0 and "D_pag_all" in out.stdout, out.stdout + out.stderr
    write_edm2_case(tmp_path, "tiny", tiny_edm2(), break_output="D")
    out = run()
    assert out.returncode == 1 and "FAIL" in out.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_main(conformance.main, empty).returncode == 2


def test_edm2_pickle_in_the_release_format_loads_safely(tmp_path):
    model = tiny_edm2()
    path = tmp_path / "edm2-img16-tiny-0000001-0.100.pkl"
    write_edm2_pickle(path, model, TINY_EDM2, extra={"dataset_kwargs": {"class_name": "training.dataset.ImageFolderDataset"}})
    loaded = loading.load_edm2_pickle(path)
    x, sigma, y = torch.randn(3, 3, 16, 16), torch.tensor([0.1, 1.0, 10.0]), torch.tensor([0, 4, 9])
    with torch.no_grad():
        ref = EDM2Denoiser(**TINY_EDM2)
        params = dict(model.named_parameters())
        ref.load_state_dict({k: v.half().float() if k in params else v for k, v in model.state_dict().items()})  # fp16 parameters
        torch.testing.assert_close(loaded(x, sigma, y), ref.eval()(x, sigma, y))


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump({"ema": Payload(f"touch {marker}")}, f)
    with pytest.raises(loading.RefusedPickle, match=r"refused: the file asks to load (posix|os|nt)\.system"):
        loading.load_edm2_pickle(path)
    assert not marker.exists()
    # builtins.eval / exec are refused in the same way
    with open(path, "wb") as f:
        f.write(b"cbuiltins\neval\n(S'1+1'\ntR.")
    with pytest.raises(loading.RefusedPickle, match="builtins.eval"):
        loading.read_edm2_pickle(path)


def test_edm2_loader_errors_say_what_is_wrong(tmp_path):
    model = tiny_edm2()
    good = tmp_path / "good.pkl"
    write_edm2_pickle(good, model, TINY_EDM2)
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        loading.load_edm2_pickle(truncated)
    with pytest.raises(FileNotFoundError, match="not found"):
        loading.load_edm2_pickle(tmp_path / "missing.pkl")
    wrong = tmp_path / "wrong.pkl"  # weights of one size, constructor of another
    write_edm2_pickle(wrong, model, {**TINY_EDM2, "model_channels": 32})
    with pytest.raises(ValueError, match="has shape .* the model expects"):
        loading.load_edm2_pickle(wrong)
    nan = tmp_path / "nan.pkl"
    with torch.no_grad():
        model.unet.out_conv.weight[0, 0, 0, 0] = float("nan")
    write_edm2_pickle(nan, model, TINY_EDM2)
    with pytest.raises(ValueError, match="NaN"):
        loading.load_edm2_pickle(nan)
    no_ema = tmp_path / "no_ema.pkl"
    with open(no_ema, "wb") as f:
        pickle.dump({"something": 1}, f)
    with pytest.raises(ValueError, match="no 'ema' network"):
        loading.load_edm2_pickle(no_ema)


def test_adm_pt_files_load_with_weights_only_and_refuse_code(tmp_path):
    torch.manual_seed(0)
    unet = ADMUNet(**TINY_ADM).eval()
    path = tmp_path / "64x64_diffusion.pt"
    torch.save({k: v.half() for k, v in unet.state_dict().items()}, path)
    loaded = loading.load_adm_unet(path, **TINY_ADM)
    assert set(loaded.state_dict()) == set(unet.state_dict())
    evil = tmp_path / "evil.pt"
    torch.save({"weight": Payload("echo pwned")}, evil)
    with pytest.raises(ValueError, match="refused by weights_only"):
        loading.load_adm_unet(evil, **TINY_ADM)
    with pytest.raises(ValueError, match="has shape"):
        loading.load_adm_unet(path, **{**TINY_ADM, "model_channels": 64, "num_head_channels": 32})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        loading.load_adm_unet(truncated, **TINY_ADM)
    with pytest.raises(FileNotFoundError, match="not found"):
        loading.load_adm_classifier(tmp_path / "64x64_classifier.pt")


def test_imagenet_networks_are_course_denoisers_and_guiders_run_on_them():
    edm2 = tiny_edm2()
    x = torch.randn(2, 3, 16, 16)
    y = torch.tensor([3, 5])
    with torch.no_grad():
        assert edm2(x, 1.0, y).shape == x.shape
        torch.testing.assert_close(edm2(x, 1.0, -1), edm2(x, 1.0, None))  # the null label is the all-zero vector
        cfg = guiders.CFG(edm2, 2.0)(x, 1.0, y)
        pag = guiders.PAG(edm2, edm2.attention_blocks()[:1], 2.0)(x, 1.0, y)
        assert cfg.shape == pag.shape == x.shape
    torch.manual_seed(0)
    adm = ADMDenoiser(ADMUNet(**TINY_ADM).eval())
    clf = ADMClassifierOnSigma(ADMClassifier(**TINY_CLF).eval())
    with torch.no_grad():
        assert adm(x, 2.0, y).shape == x.shape
    cg = guiders.ClassifierGuidance(adm, clf, 1.0, conditional=True)(x, 2.0, y)
    assert torch.isfinite(cg).all()
    with pytest.raises(ValueError, match="no null class"):
        adm(x, 2.0, None)
    with pytest.raises(ValueError, match=r"x must have shape \[N, 3, 16, 16\]"):
        edm2(torch.randn(2, 3, 8, 8), 1.0, y)
    with pytest.raises(ValueError, match="unknown attention layer"):
        guiders.PAG(adm, ["unet.input_blocks.1.1"], 2.0)
