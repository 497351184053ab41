"""The 32x32 glyph rung's data: the committed set, the font checks, and a rebuild bit for bit.

The rebuild tests use the fonts matplotlib ships (DejaVu, STIX, a last-resort font of boxes), so
they run anywhere; the committed data itself was rendered from Debian's font packages."""
import json
import os
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

from course import checkpoints, glyphs

MPL_FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
LETTER_FONTS = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSansMono.ttf",
                "STIXGeneral.ttf", "STIXGeneralBol.ttf"]


def clean(name):
    return np.stack([glyphs.render(MPL_FONTS / name, c) for c in glyphs.LETTERS])


# --- the committed data set ---------------------------------------------------------------------------------
def test_committed_glyphs_are_split_by_font_and_small():
    path = checkpoints.data_folder() / glyphs.FILE_NAME
    assert path.stat().st_size <= 15 * 2**20, f"{path} is {path.stat().st_size / 2**20:.1f} MiB; the budget is 15 MiB"
    d = glyphs.load()
    for part in ("train", "test"):
        x, y, fonts = d[f"x_{part}"], d[f"y_{part}"], d[f"font_{part}"]
        assert x.shape[1:] == (1, 32, 32) and x.dtype == torch.float32 and len(y) == len(x) == len(fonts), part
        assert x.min() == -1 and x.max() == 1, f"{part}: pixels must span [-1, 1] (ink +1)"
        counts = torch.bincount(y, minlength=26)
        assert (counts == counts[0]).all(), f"{part}: every letter equally often, got {counts.tolist()}"
    train, test = set(d["font_train"]), set(d["font_test"])
    assert not train & test, f"fonts on both sides of the split: {sorted(train & test)[:5]}"
    assert len(train | test) >= 150, f"{len(train | test)} font families; the rung asks for at least 150"
    assert len(test) >= 30, f"only {len(test)} test families"


def test_manifest_names_every_family_its_package_and_licence():
    folder = checkpoints.data_folder()
    manifest = json.loads((folder / glyphs.MANIFEST_NAME).read_text())
    d = glyphs.load()
    names = {f["name"]: f for f in manifest["families"]}
    assert set(names) == set(d["font_train"]) | set(d["font_test"])
    for f in manifest["families"]:
        assert f["package"] in glyphs.PACKAGES and f["licence"] and f["files"], f
        assert f["split"] == ("test" if f["name"] in set(d["font_test"]) else "train"), f
        assert f["recognised"] >= 5, f
    groups = {}
    for f in manifest["families"]:
        groups.setdefault(f["group"], set()).add(f["split"])
    assert all(len(s) == 1 for s in groups.values()), "a design group was split between train and test"
    per_family = {n: glyphs.RENDERS * 26 * len(f["files"]) for n, f in names.items()}
    assert manifest["images"]["train"] == sum(v for n, v in per_family.items() if names[n]["split"] == "train")
    assert "python -m course.glyphs build" in manifest["command"]


# --- how fonts are checked ------------------------------------------------------------------------------------
def test_usable_keeps_letters_and_refuses_blank_filled_and_lookalike_fonts():
    letters = clean("DejaVuSans.ttf")
    assert glyphs.usable(letters)
    assert not glyphs.usable(np.zeros_like(letters)), "a font of blanks"
    assert not glyphs.usable(np.full_like(letters, 255)), "a font of filled boxes"
    assert not glyphs.usable(np.repeat(letters[:1], 26, axis=0)), "a font that draws every letter alike"


def test_font_info_refuses_fonts_without_the_capitals():
    assert glyphs.font_info(MPL_FONTS / "DejaVuSans.ttf") == ("DejaVu Sans", "Book")
    assert glyphs.font_info(MPL_FONTS / "STIXSizOneSymReg.ttf") is None  # a font of large math symbols
    assert glyphs.font_info(MPL_FONTS / "LICENSE_DEJAVU") is None  # not a font at all


def test_recognised_scores_letters_high_and_a_font_of_boxes_low():
    cleans = [clean(name) for name in LETTER_FONTS] + [clean("LastResortHE-Regular.ttf")]
    scores = glyphs.recognised(cleans, k=3)
    assert min(scores[:-1]) >= 20, f"letter fonts should be recognised by the others: {scores}"
    assert scores[-1] < 5, f"the last-resort font draws boxes and signs, not letters: {scores[-1]} of 26 recognised"


def test_render_is_centred_and_its_jitter_is_seeded():
    a = glyphs.render(MPL_FONTS / "DejaVuSans.ttf", "O")
    ys, xs = np.nonzero(a > 64)
    assert abs(ys.mean() - 15.5) < 1.5 and abs(xs.mean() - 15.5) < 1.5, "the clean letter is centred by its ink"
    extents = [max(np.ptp(np.nonzero(g > 64)[0]), np.ptp(np.nonzero(g > 64)[1])) + 1 for g in clean("DejaVuSans.ttf")]
    assert 24 <= max(extents) <= 28, f"the largest capital should span about 26 of 32 pixels; spans {max(extents)}"
    r1 = glyphs.render(MPL_FONTS / "DejaVuSans.ttf", "R", np.random.default_rng(3))
    r2 = glyphs.render(MPL_FONTS / "DejaVuSans.ttf", "R", np.random.default_rng(3))
    r3 = glyphs.render(MPL_FONTS / "DejaVuSans.ttf", "R", np.random.default_rng(4))
    assert np.array_equal(r1, r2) and not np.array_equal(r1, r3)


# --- a rebuild, bit for bit -------------------------------------------------------------------------------------
def test_build_is_bit_for_bit_and_loads(tmp_path, monkeypatch):
    files = {"pkg-dejavu": [str(MPL_FONTS / f) for f in ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf",
                                                           "DejaVuSansMono.ttf", "DejaVuSansDisplay.ttf")],
             "pkg-stix": [str(MPL_FONTS / f) for f in ("STIXGeneral.ttf", "STIXSizOneSymReg.ttf")],
             "pkg-lastresort": [str(MPL_FONTS / "LastResortHE-Regular.ttf")]}
    monkeypatch.setattr(glyphs, "package_files", lambda p: files[p])
    monkeypatch.setattr(glyphs, "package_licence", lambda p: "test licence")
    monkeypatch.setattr(glyphs, "_package_version", lambda p: "0")
    monkeypatch.setattr(glyphs, "TEST_FRACTION", 0.5)
    monkeypatch.setattr(glyphs, "RENDERS", 1)
    monkeypatch.setattr(glyphs, "NEIGHBOURS", 1)  # a handful of fonts: the nearest letter of another font votes
    packages = sorted(files)
    m1 = glyphs.build(tmp_path / "a", packages, progress=False)
    m2 = glyphs.build(tmp_path / "b", packages, progress=False)
    a, b = (tmp_path / "a" / glyphs.FILE_NAME).read_bytes(), (tmp_path / "b" / glyphs.FILE_NAME).read_bytes()
    assert a == b, "two builds from the same fonts must write the same bytes"
    kept = [f["name"] for f in m1["families"]]
    assert "DejaVu Sans" in kept and "STIXGeneral" in kept and not any("Last" in n for n in kept), kept
    assert m1["families"] == m2["families"]
    d = glyphs.load(tmp_path / "a")
    assert len(d["x_train"]) + len(d["x_test"]) == 26 * sum(len(f["files"]) for f in m1["families"])


def test_load_says_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m course.glyphs build"):
        glyphs.load(tmp_path)
    (tmp_path / glyphs.FILE_NAME).write_bytes((checkpoints.data_folder() / glyphs.FILE_NAME).read_bytes()[:1000])
    with pytest.raises(ValueError, match="could not be read"):
        glyphs.load(tmp_path)
    np.savez(tmp_path / glyphs.FILE_NAME, x_train=np.array([object()], dtype=object))  # a pickled object inside
    with pytest.raises(ValueError):
        glyphs.load(tmp_path)
    os.remove(tmp_path / glyphs.FILE_NAME)


# --- the sweeps of lesson 6b (course.glyph_sweep), on a tiny scale ---------------------------------------------
@pytest.fixture
def tiny_sweep(tmp_path, monkeypatch):
    """The committed glyph models in a folder of their own, 400 test images, 26 samples of 2 Heun steps."""
    from course import glyph_models, glyph_sweep

    for name in list(glyph_models.SPECS) + ["glyphs_main_curve"]:
        src = checkpoints.data_folder() / (f"{name}.json" if name.endswith("curve") else f"{name}.safetensors")
        if src.exists():
            (tmp_path / src.name).write_bytes(src.read_bytes())
    full = glyphs.load()
    small = {**full, "x_test": full["x_test"][:400], "y_test": full["y_test"][:400], "font_test": full["font_test"][:400]}
    monkeypatch.setattr(glyphs, "load", lambda *a, **k: small)
    monkeypatch.setattr(glyph_models, "load_model", lambda name, folder=None: checkpoints.load(tmp_path / f"{name}.safetensors"))
    for key, value in dict(SCAN_N=26, SEEDS_N=26, STEPS=2, SEEDS=(1,), SCAN_WS=(2.0, 3.0), SCAN_WS_MORE={"cg": (4.0,)},
                           ABLATION={"shorter only": "glyphs_guide"}).items():
        monkeypatch.setattr(glyph_sweep, key, value)
    return glyph_sweep, tmp_path


def test_glyph_sweep_measures_each_sample_set_once_and_the_lesson_can_read_it(tiny_sweep):
    glyph_sweep, folder = tiny_sweep
    if not (folder / "glyphs_classifier.safetensors").exists():
        pytest.skip("glyphs_classifier is not trained yet (python -m course.glyph_models data --only glyphs_classifier)")
    logged = []
    state = glyph_sweep.run(folder, stages=["scan"], log=logged.append)
    assert len(state["rows"]) == 1 + 4 * 2 + 1 and len(logged) == 10, \
        "the scan: the unguided model, 4 guiders x 2 scales, and CG at its one more scale"
    assert state["settings"]["scan_ws_more"] == {"cg": (4.0,)}
    with pytest.raises(RuntimeError, match="incomplete"):
        glyph_sweep.best_w(state["rows"][:3])
    best = glyph_sweep.best_w(state["rows"])
    assert set(best) == {"cfg", "autoguidance", "pag", "cg"} and set(best.values()) <= {2.0, 3.0, 4.0}
    assert best["pag"] != 4.0, "a scale only CG's scan tries is never another guider's best"
    state = glyph_sweep.run(folder, stages=["scan", "seeds", "ablation"], share=True, log=logged.append)
    assert len(logged) == 10 + 5 + 1, "a second run measures only what is missing (5 seed rows, 1 ablation row)"
    for row in state["rows"]:
        assert all(np.isfinite(row[k]) for k in ("fd", "precision", "recall", "accuracy")), row
    out = glyph_sweep.load(folder)
    f, predicted, requested = out["features"]["cfg@2"]
    assert f.shape == (26, 128) and predicted.shape == requested.shape == (26,)
    scan_row = next(r for r in state["rows"] if r["stage"] == "scan" and r["guider"] == "cfg" and r["w"] == 2.0)
    assert abs((predicted == requested).double().mean().item() - scan_row["accuracy"]) < 1e-9, \
        "the kept features must be the ones the scan's scores came from"
    with pytest.raises(FileNotFoundError, match="python -m course.glyph_sweep data"):
        glyph_sweep.load(folder / "nowhere")
