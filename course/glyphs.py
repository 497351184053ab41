"""The 32x32 rung: the 26 capital Latin letters rendered from many fonts (in the spirit of
notMNIST, Bulatov 2011, http://yaroslavvb.blogspot.com/2011/09/notmnist-dataset.html).

* :func:`load` - the committed images (``data/glyphs.npz``): a dict with ``x_train``, ``x_test``
  [N, 1, 32, 32] float32 in [-1, 1] (ink is +1), ``y_train``, ``y_test`` [N] long (0 = A ... 25 = Z)
  and ``font_train``, ``font_test`` (each image's font family name). The split is by font family:
  no test family appears in training, so the test set measures generalisation to unseen styles.
* ``python -m course.glyphs packages`` - the Debian font packages the data is rendered from;
  ``apt-get install $(python -m course.glyphs packages)`` installs them.
* ``python -m course.glyphs build data`` - renders the data set again, bit for bit for the same
  font packages and Pillow (whose FreeType renders the glyphs), and writes ``glyphs.npz`` and the
  manifest ``glyphs_manifest.json`` (every family: its package, files and licence).

How a font is kept (:func:`font_info`, :func:`usable`, :func:`collect`): its character map has
every capital letter and is not symbol-encoded, its name is not a symbol font's ("Symbol",
"Dingbat", "Icon", ...), every letter leaves ink (1-70% of its box: no blanks, no filled boxes),
no two of its letters render alike, it is not a copy of a family already kept (Arimo and
Liberation Sans draw the same letters), and the *other* fonts recognise at least 5 of its 26
letters (a nearest-neighbour vote; fonts of stars, snowflakes or blocks score 0-3). Families that
draw nearly the same letters (Times' many clones) form a design group, and a whole group goes to
training or to test, so a test font is never a near copy of a training font.

How a letter is drawn (:func:`render`): the font is sized so that its largest capital fills 26 of
the 32 pixels, the letter is centred by its ink and then jittered - scale x0.8-1.0, rotation
+-8 degrees, offset +-2 pixels, stroke thickened by 0-1.5 pixels in half the images - at 4x the
resolution and box-filtered down, so edges are antialiased.
"""
import argparse
import hashlib
import io
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
SIZE, SCALE = 32, 4  # output pixels; rendering supersampling factor
FILE_NAME, MANIFEST_NAME = "glyphs.npz", "glyphs_manifest.json"
TEST_FRACTION = 0.2  # of the families, chosen by a hash of the name (stable when fonts are added)
RENDERS = 2  # jittered renderings of each letter of each font file
MAX_STYLES = 4  # font files per family (regular, bold, italic, bold italic first)
NEIGHBOURS = 5  # the vote of :func:`recognised`
COPY, GROUP = 5.0, 8.0  # mean |difference| of two fonts' clean letters (0-255): a copy; one design group

# Debian packages of fonts with the Latin capitals (Debian 12); `python -m course.glyphs packages`.
PACKAGES = sorted("""
fonts-3270 fonts-adf-accanthis fonts-adf-baskervald fonts-adf-berenis fonts-adf-gillius fonts-adf-ikarius
fonts-adf-irianis fonts-adf-libris fonts-adf-mekanus fonts-adf-oldania fonts-adf-romande fonts-adf-solothurn
fonts-adf-switzera fonts-adf-tribun fonts-adf-universalis fonts-adf-verana fonts-aenigma fonts-agave fonts-allerta
fonts-anonymous-pro fonts-apropal fonts-arapey fonts-averia-gwf fonts-averia-sans-gwf fonts-averia-serif-gwf fonts-b612
fonts-bajaderka fonts-bebas-neue fonts-beteckna fonts-blankenburg fonts-cabin fonts-cabinsketch fonts-campania
fonts-cantarell fonts-cardo fonts-century-catalogue fonts-cherrybomb fonts-clear-sans fonts-cmu fonts-comfortaa
fonts-comic-neue fonts-courier-prime fonts-creep2 fonts-crosextra-caladea fonts-crosextra-carlito fonts-croscore
fonts-dancingscript fonts-dejavu fonts-dkg-handwriting fonts-dosis fonts-dustin fonts-ebgaramond fonts-ecolier-court
fonts-elstob fonts-engadget fonts-essays1743 fonts-eurofurence fonts-f500 fonts-fanwood fonts-fantasma
fonts-fantasque-sans fonts-femkeklaver fonts-firacode fonts-freefont-ttf fonts-gamaliel fonts-georgewilliams
fonts-gfs-artemisia fonts-gfs-baskerville fonts-gfs-bodoni-classic fonts-gfs-complutum fonts-gfs-didot
fonts-gfs-didot-classic fonts-gfs-gazis fonts-gfs-neohellenic fonts-gfs-olga fonts-gfs-porson fonts-gfs-solomos
fonts-gfs-theokritos fonts-gnutypewriter fonts-go fonts-gotico-antiqua fonts-goudybookletter fonts-hack fonts-havana
fonts-hermit fonts-humor-sans fonts-inconsolata fonts-inter fonts-isabella fonts-jetbrains-mono fonts-joscelyn
fonts-junction fonts-junicode fonts-jura fonts-karla fonts-karmilla fonts-kaushanscript fonts-klaudia-berenika
fonts-kristi fonts-lato fonts-le-murmure fonts-league-spartan fonts-leckerli-one fonts-lemonada fonts-levien-museum
fonts-levien-typoscript fonts-liberation fonts-liberation2 fonts-libfinal fonts-lindenhill fonts-linuxlibertine
fonts-lmodern fonts-lobster fonts-lobstertwo fonts-manrope fonts-millimetre fonts-monofur fonts-monoid fonts-mononoki
fonts-mph-2b-damase fonts-national-park fonts-ocr-a fonts-ocr-b fonts-oflb-euterpe fonts-okolaks fonts-oldstandard
fonts-open-sans fonts-opendin fonts-opendyslexic fonts-osifont fonts-paratype fonts-play fonts-prociono
fonts-quattrocento fonts-quicksand fonts-radisnoir fonts-rampart fonts-reggae fonts-roadgeek fonts-roboto-slab
fonts-roboto-unhinted fonts-rocknroll fonts-routed-gothic fonts-rufscript fonts-seto fonts-sil-andika
fonts-sil-charis fonts-sil-doulos fonts-sil-gentium fonts-stix fonts-texgyre fonts-urw-base35
""".split())

_SYMBOL_WORDS = ("symbol", "dingbat", "icon", "emoji", "awesome", "ornament", "math")
_STYLE_ORDER = ("regular", "book", "roman", "normal", "medium", "bold", "italic", "oblique", "bold italic", "bold oblique")


# --- reading the committed data ------------------------------------------------------------------------
def load(folder=None):
    """The committed data set as a dict: ``x_train``, ``x_test`` [N, 1, 32, 32] float32 in [-1, 1],
    ``y_train``, ``y_test`` [N] long, ``font_train``, ``font_test`` (lists of family names)."""
    from .checkpoints import data_folder

    path = Path(folder or data_folder()) / FILE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: it is committed with the course (data/{FILE_NAME}); "
                                "`python -m course.glyphs build data` renders it again from Debian's fonts")
    try:
        with np.load(path, allow_pickle=False) as f:  # no pickle: the file holds plain arrays only
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise ValueError(f"{path} could not be read ({err}); it may be truncated: restore it with git or rebuild it") from None
    need = ("x_train", "y_train", "font_train", "x_test", "y_test", "font_test", "font_names")
    missing = [k for k in need if k not in arrays]
    if missing:
        raise ValueError(f"{path} lacks {missing}: it was not written by `python -m course.glyphs build`")
    names = [str(n) for n in arrays["font_names"]]
    out = {}
    for part in ("train", "test"):
        x = arrays[f"x_{part}"]
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (SIZE, SIZE):
            raise ValueError(f"{path}: x_{part} is {x.dtype} {list(x.shape)}, expected uint8 [N, {SIZE}, {SIZE}]")
        out[f"x_{part}"] = torch.from_numpy(x.astype(np.float32) / 127.5 - 1).unsqueeze(1)  # 0..255 -> [-1, 1]
        out[f"y_{part}"] = torch.from_numpy(arrays[f"y_{part}"].astype(np.int64))
        out[f"font_{part}"] = [names[i] for i in arrays[f"font_{part}"]]
    return out


# --- finding and checking fonts ----------------------------------------------------------------------------
def package_files(package):
    """The .ttf / .otf files a Debian package installed (``dpkg -L``), sorted."""
    out = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"font package {package} is not installed: apt-get install $(python -m course.glyphs packages)")
    return sorted(p for p in out.stdout.split() if p.lower().endswith((".ttf", ".otf")) and Path(p).is_file())


def package_licence(package):
    """The licence names of a package's copyright file (Debian's machine-readable format), joined."""
    path = Path("/usr/share/doc") / package / "copyright"
    if not path.is_file():
        return "unknown"
    names = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("License:"):
            name = line.split(":", 1)[1].strip()
            if name and len(name) <= 60 and name not in names:  # a short name, not a sentence
                names.append(name)
    return " / ".join(names) or "see /usr/share/doc/" + package + "/copyright"


def font_info(path):
    """(family, style) of a font file, or None when it cannot serve: no full set of capitals in its
    character map, a symbol-encoded map, or a symbol-like name."""
    import logging

    from fontTools.ttLib import TTFont, TTLibError

    logging.getLogger("fontTools").setLevel(logging.ERROR)  # its notes on harmless table quirks are not ours

    try:
        font = TTFont(path, lazy=True, fontNumber=0)
        cmap = font["cmap"]
        best = cmap.getBestCmap() or {}
        names = font["name"]
        family = names.getDebugName(16) or names.getDebugName(1)
        style = names.getDebugName(17) or names.getDebugName(2) or "Regular"
    except (TTLibError, KeyError, AssertionError, OSError, struct_error()):
        return None
    if not family or any(word in family.lower() for word in _SYMBOL_WORDS):
        return None
    if any(t.platformID == 3 and t.platEncID == 0 for t in cmap.tables):  # a symbol font's encoding
        return None
    if not all(ord(c) in best for c in LETTERS):
        return None
    return family.strip(), style.strip()


def struct_error():
    import struct

    return struct.error


def _style_rank(style):
    s = style.lower()
    return (_STYLE_ORDER.index(s) if s in _STYLE_ORDER else len(_STYLE_ORDER), s)


# --- rendering ---------------------------------------------------------------------------------------------
def _ink_box(img):
    """(left, top, right, bottom) of the non-zero pixels of a PIL 'L' image, or None."""
    return img.getbbox()


def render(path, letter, rng=None):
    """One letter of one font file as a [32, 32] uint8 array (ink 255 on 0). ``rng`` (a numpy
    Generator) draws the jitter; None renders the clean, centred letter."""
    from PIL import Image, ImageDraw, ImageFont

    big = SIZE * SCALE
    size = _font_size(path)
    scale, angle, dx, dy, stroke = 1.0, 0.0, 0.0, 0.0, 0
    if rng is not None:
        scale = rng.uniform(0.8, 1.0)
        angle = rng.uniform(-8, 8)
        dx, dy = rng.uniform(-2, 2, size=2) * SCALE
        stroke = int(rng.integers(0, 7)) if rng.random() < 0.5 else 0  # 0-1.5 output pixels
    font = ImageFont.truetype(str(path), max(4, int(round(size * scale))))
    canvas = Image.new("L", (3 * big, 3 * big), 0)
    ImageDraw.Draw(canvas).text((big, big), letter, fill=255, font=font, stroke_width=stroke, stroke_fill=255)
    if angle:
        canvas = canvas.rotate(angle, resample=Image.BICUBIC, center=(1.5 * big, 1.5 * big))
    box = _ink_box(canvas)
    if box is None:
        return np.zeros((SIZE, SIZE), np.uint8)
    cx, cy = (box[0] + box[2]) / 2 - dx, (box[1] + box[3]) / 2 - dy  # centre the ink, then offset
    left, top = int(round(cx - big / 2)), int(round(cy - big / 2))
    crop = canvas.crop((left, top, left + big, top + big))
    return np.asarray(crop.resize((SIZE, SIZE), Image.BOX), dtype=np.uint8)


_SIZE_CACHE = {}


def _font_size(path):
    """The point size at which the font's largest capital (width or height of its ink) spans 26
    of the 32 pixels (at the supersampled resolution)."""
    from PIL import Image, ImageDraw, ImageFont

    path = str(path)
    if path not in _SIZE_CACHE:
        probe = 200
        font = ImageFont.truetype(path, probe)
        extent = 1
        for c in LETTERS:
            img = Image.new("L", (4 * probe, 4 * probe), 0)
            ImageDraw.Draw(img).text((probe, probe), c, fill=255, font=font)
            box = img.getbbox()
            if box:
                extent = max(extent, box[2] - box[0], box[3] - box[1])
        _SIZE_CACHE[path] = probe * (26 * SCALE) / extent
    return _SIZE_CACHE[path]


def usable(clean):
    """Whether a font's 26 clean letters [26, 32, 32] uint8 look like 26 letters: each leaves ink
    on 1-70% of its box, and no two are alike (mean |difference| at least 2 of 255: a light serif
    font's E and F differ by about 5, a font that draws one shape for every letter by 0)."""
    ink = (clean > 64).mean(axis=(1, 2))
    if (ink < 0.01).any() or (ink > 0.7).any():
        return False
    flat = clean.reshape(26, -1).astype(np.float32)
    diff = np.abs(flat[:, None, :] - flat[None, :, :]).mean(-1)
    diff[np.arange(26), np.arange(26)] = np.inf
    return bool(diff.min() >= 2.0)


def _is_test(group):
    """A design group is a test group by a hash of its name: stable, and independent of the others."""
    return int(hashlib.sha256(group.encode()).hexdigest()[:8], 16) / 16**8 < TEST_FRACTION


def _distance(a, b):
    """Mean |difference| (0-255) between two fonts' clean letters [26, 32, 32]."""
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def recognised(cleans, k=None):
    """For each font [F, 26, 32, 32], how many of its letters the k nearest letters of the *other*
    fonts (blurred pixels, correlation) vote for correctly: a font of symbols scores near 0,
    a font of letters, however decorated, 5 or more (measured on the 287 candidate families)."""
    k = k or NEIGHBOURS
    t = torch.tensor(np.asarray(cleans, dtype=np.float32) / 255).reshape(-1, 1, SIZE, SIZE)
    g = torch.exp(-torch.arange(-4, 5, dtype=torch.float32) ** 2 / (2 * 1.5**2))
    g = g / g.sum()
    t = torch.nn.functional.conv2d(torch.nn.functional.conv2d(t, g.view(1, 1, 1, -1), padding=(0, 4)), g.view(1, 1, -1, 1), padding=(4, 0))
    f = t.reshape(t.shape[0], -1)
    f = f - f.mean(1, keepdim=True)
    f = f / f.norm(dim=1, keepdim=True).clamp(min=1e-8)
    n = len(cleans)
    font, label = torch.arange(n).repeat_interleave(26), torch.arange(26).repeat(n)
    sim = (f @ f.T).masked_fill(font[:, None] == font[None, :], -2.0)  # never vote with its own font
    votes = label[sim.topk(k, dim=1).indices]
    return (torch.mode(votes, dim=1).values == label).reshape(n, 26).sum(1).tolist()


def collect(packages=PACKAGES, progress=True):
    """{family: dict(package, files, styles, clean [26, 32, 32] uint8, recognised, group)} for every
    usable family. Families are visited in sorted order; one whose clean letters differ from an
    already kept family's by less than COPY (mean |difference|, 0-255) is a copy and dropped; one
    whose letters the other fonts recognise fewer than 5 times of 26 is a symbol font and dropped;
    families closer than GROUP form one design group (Times' clones, say), and a group goes to one
    side of the train / test split as a whole."""
    families = {}
    for package in packages:
        for path in package_files(package):
            info = font_info(path)
            if info is None:
                continue
            family, style = info
            entry = families.setdefault(family, dict(package=package, files=[]))
            if entry["package"] == package:
                entry["files"].append((style, path))
    kept, clean_kept = {}, []
    for family in sorted(families):
        entry = families[family]
        files = sorted(entry["files"], key=lambda sp: (_style_rank(sp[0]), sp[1]))[:MAX_STYLES]
        try:
            clean = np.stack([render(files[0][1], c) for c in LETTERS])
        except OSError:  # a file FreeType cannot open
            continue
        if not usable(clean):
            continue
        if clean_kept and min(_distance(clean, other) for other in clean_kept) < COPY:
            continue
        kept[family] = dict(package=entry["package"], files=[p for _, p in files], styles=[s for s, _ in files], clean=clean)
        clean_kept.append(clean)
    names = list(kept)
    for name, score in zip(names, recognised([kept[n]["clean"] for n in names])):
        kept[name]["recognised"] = score
    kept = {n: v for n, v in kept.items() if v["recognised"] >= 5}
    names = list(kept)
    parent = {n: n for n in names}  # union-find over "closer than GROUP"

    def root(n):
        while parent[n] != n:
            n = parent[n]
        return n

    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if _distance(kept[a]["clean"], kept[b]["clean"]) < GROUP:
                ra, rb = root(a), root(b)
                parent[max(ra, rb)] = min(ra, rb)  # the group is named by its first family
    for n in names:
        kept[n]["group"] = root(n)
    if progress:
        print(f"{len(kept)} families kept in {len(set(parent.values()))} design groups", file=sys.stderr)
    return kept


def _write_npz(path, arrays):
    """np.savez_compressed, bit for bit: fixed timestamps and order (numpy's own stamps the time)."""
    from .checkpoints import atomic_write

    def write(tmp):
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for name in sorted(arrays):
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, buf.getvalue(), compresslevel=9)

    atomic_write(path, write)


def build(folder, packages=PACKAGES, seed=0, progress=True):
    """Render the data set into ``folder``/glyphs.npz and its manifest. Returns the manifest."""
    t0 = time.perf_counter()
    fams = collect(packages, progress)
    names = sorted(fams)
    parts = {"train": ([], [], []), "test": ([], [], [])}
    for i, family in enumerate(names):
        x, y, f = parts["test" if _is_test(fams[family]["group"]) else "train"]
        # each family its own generator (seeded by its name): adding a font changes no other's images
        rng = np.random.default_rng([seed, int(hashlib.sha256(family.encode()).hexdigest()[:12], 16)])
        for path in fams[family]["files"]:
            for _ in range(RENDERS):
                for label, c in enumerate(LETTERS):
                    x.append(render(path, c, rng))
                    y.append(label)
                    f.append(i)
        if progress and ((i + 1) % 50 == 0 or i + 1 == len(names)):
            print(f"rendered {i + 1}/{len(names)} families", file=sys.stderr)
    arrays = {"font_names": np.array(names)}
    for part, (x, y, f) in parts.items():
        arrays[f"x_{part}"] = np.stack(x).astype(np.uint8) if x else np.zeros((0, SIZE, SIZE), np.uint8)
        arrays[f"y_{part}"] = np.array(y, dtype=np.uint8)
        arrays[f"font_{part}"] = np.array(f, dtype=np.int16)
    folder = Path(folder)
    _write_npz(folder / FILE_NAME, arrays)
    from PIL import __version__ as pillow

    manifest = dict(
        command="apt-get install $(python -m course.glyphs packages) && python -m course.glyphs build data",
        pillow=pillow, seed=seed, letters=LETTERS, renders_per_file=RENDERS, max_styles=MAX_STYLES,
        test_fraction=TEST_FRACTION, seconds=round(time.perf_counter() - t0, 1),
        images=dict(train=int(len(arrays["y_train"])), test=int(len(arrays["y_test"]))),
        families=[dict(name=n, split="test" if _is_test(fams[n]["group"]) else "train", group=fams[n]["group"],
                       recognised=fams[n]["recognised"], package=fams[n]["package"],
                       licence=package_licence(fams[n]["package"]), styles=fams[n]["styles"],
                       files=[Path(p).name for p in fams[n]["files"]]) for n in names],
        packages={p: _package_version(p) for p in packages},
    )
    from .checkpoints import atomic_write

    atomic_write(folder / MANIFEST_NAME, lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n"))
    return manifest


def _package_version(package):
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    return out.stdout.strip() or "not installed"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m course.glyphs", description="The 32x32 glyph data set.")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("packages", help="print the Debian font packages to install")
    b = sub.add_parser("build", help="render the data set from the installed fonts")
    b.add_argument("folder", help="where to write glyphs.npz and glyphs_manifest.json (the repository's data/)")
    args = ap.parse_args(argv)
    if args.command == "packages":
        print(" ".join(PACKAGES))
        return 0
    manifest = build(args.folder)
    n_train = sum(f["split"] == "train" for f in manifest["families"])
    print(f"{len(manifest['families'])} families ({n_train} train, {len(manifest['families']) - n_train} test), "
          f"{manifest['images']['train']} train and {manifest['images']['test']} test images, {manifest['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
