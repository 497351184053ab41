"""scripts/screenshot_book.py finds what a reader cannot read: shrunken figure text, cut outputs,
build leftovers. Checked on two small pages (one bad, one good) in the system's headless Chromium;
the real pages are checked with `make screenshots` after a book build."""
import base64
import importlib.util
import shutil
import struct
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("screenshot_book", ROOT / "scripts" / "screenshot_book.py")
shots = importlib.util.module_from_spec(spec)
spec.loader.exec_module(shots)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def png(width, height=10):
    """A blank PNG of the given size, as a data URI."""
    raw = b"".join(b"\x00" + b"\xff" * (3 * width) for _ in range(height))
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    body = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) \
        + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    return "data:image/png;base64," + base64.b64encode(body).decode()


PAGE = """<html><body><main style="width: 730px">
<div class="cell_output"><img src="{img}" style="max-width: 100%"></div>
<div class="cell_output"><pre style="overflow-x: auto">{pre}</pre></div>
<p>{text}</p></main></body></html>"""


def test_min_text_px_is_the_course_rule():
    assert shots.min_text_px(1000, 730) == pytest.approx(10 * 100 / 72 * 0.73)
    assert shots.min_text_px(600, 600) == pytest.approx(10 * 100 / 72)  # not shrunk


@pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium here (Debian: apt-get install chromium)")
def test_the_checker_flags_a_bad_page_and_passes_a_good_one(tmp_path):
    pytest.importorskip("playwright", reason="needs playwright (pip install playwright)")
    from playwright.sync_api import sync_playwright

    bad = tmp_path / "bad.html"
    bad.write_text(PAGE.format(img=png(1600), pre="x" * 400, text="saved to /tmp/abc/run.json"))
    good = tmp_path / "good.html"
    good.write_text(PAGE.format(img=png(900), pre="a short table", text="nothing to hide"))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=shots.CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        facts, problems = shots.check_page(page, bad.as_uri(), tmp_path / "bad.png")
        text = "\n".join(problems)
        assert facts["figures"] == 1 and facts["smallest_text_px"] < 10
        assert "1600 px shown at 730 px" in text and "cut pre" in text and "'/tmp/'" in text, text
        facts, problems = shots.check_page(page, good.as_uri(), tmp_path / "good.png")
        assert problems == [] and facts["smallest_text_px"] >= 10, problems
        assert (tmp_path / "good.png").stat().st_size > 0
        browser.close()
