"""Screenshot every page of the built book as a reader sees it, and check what they can read.

    python scripts/screenshot_book.py [--html _build/html] [--out _build/screenshots] [--width 1280]

(`make screenshots` builds nothing: run `make book` or `make book-fast` first.) For each page it
saves a full-page PNG at the given window width and measures, in headless Chromium:

* figure text: each output image's shown width against its natural width gives the scale, and so
  the height on screen of the smallest text the course style allows (``course.plots``:
  MIN_FONT_PT at DPI); it must be >= 10 pixels;
* cut content: code outputs, tables and display equations wider than their box (the reader
  would have to scroll sideways to see their right-hand part);
* build leftovers: text a reader should not see (a temporary-folder path, a traceback, a stray
  ``True`` under a cell, a failed grading demo).

Prints one line per page and exits 1 if any page fails. Chromium comes from the system
(Debian: ``apt-get install chromium``) and is driven by Playwright (``pip install playwright``;
its own browser download is not needed).
"""
import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from course.plots import DPI, MIN_FONT_PT  # noqa: E402

MIN_TEXT_PX = 10
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LEFTOVERS = ["/tmp/", "Traceback (most recent call last)", "ClaimFailed", "FAIL  ", "Created exercises/"]

# Runs in the page: everything the checks need, measured by the browser's own layout.
MEASURE_JS = """
() => {
  const article = document.querySelector('main') || document.body;
  const imgs = [...article.querySelectorAll('.cell_output img, .output img')].map(img => ({
      src: img.getAttribute('src').slice(-40), natural: img.naturalWidth, shown: img.getBoundingClientRect().width}));
  const cut = [];
  const boxes = article.querySelectorAll('.cell_output pre, .output pre, table, mjx-container[display="true"], div.math');
  for (const el of boxes) {
    let box = el;
    // a display equation or table may scroll inside a wrapper: compare the content with what is visible
    if (el.scrollWidth > el.clientWidth + 2 || el.getBoundingClientRect().right > article.getBoundingClientRect().right + 2) {
      cut.push({tag: el.tagName.toLowerCase(), text: (el.innerText || '').trim().split('\\n')[0].slice(0, 70),
                overflow: Math.round(el.scrollWidth - el.clientWidth)});
    }
  }
  const outputs = [...article.querySelectorAll('.cell_output')].map(o => (o.innerText || '').trim());
  return {imgs, cut, text: article.innerText, stray: outputs.filter(t => t === 'True' || t === 'False').length};
}
"""


def min_text_px(natural, shown, font_pt=MIN_FONT_PT, dpi=DPI):
    """Screen height of font_pt text in a PNG made at dpi, shown at `shown` of its `natural` width."""
    return font_pt * dpi / 72 * min(1.0, shown / natural) if natural else float("inf")


def check_page(page, url, shot):
    """Load one page, save its screenshot, return (measurements, problems)."""
    page.goto(url)
    page.wait_for_load_state("load")
    page.wait_for_timeout(800)  # MathJax typesets after load
    page.screenshot(path=str(shot), full_page=True)
    m = page.evaluate(MEASURE_JS)
    problems = []
    smallest = min((min_text_px(i["natural"], i["shown"]) for i in m["imgs"]), default=None)
    for i in m["imgs"]:
        px = min_text_px(i["natural"], i["shown"])
        if px < MIN_TEXT_PX:
            problems.append(f"figure ...{i['src']} ({i['natural']} px shown at {i['shown']:.0f} px): "
                            f"its {MIN_FONT_PT} pt text is {px:.1f} px tall")
    problems += [f"cut {c['tag']} ({c['overflow']} px hidden): {c['text']!r}" for c in m["cut"]]
    problems += [f"leftover on the page: {s!r}" for s in LEFTOVERS if s in m["text"]]
    if m["stray"]:
        problems.append(f"{m['stray']} output box(es) showing only True/False")
    return {"figures": len(m["imgs"]), "smallest_text_px": smallest}, problems


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--html", default="_build/html", help="the built site (make book or make book-fast)")
    ap.add_argument("--out", default="_build/screenshots", help="where the PNGs go")
    ap.add_argument("--width", type=int, default=1280, help="window width in pixels")
    ap.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium")
    args = ap.parse_args(argv)
    html = Path(args.html).resolve()
    pages = sorted(html.glob("[0-9][0-9]*_*.html")) + [html / f"{p}.html" for p in ("index", "notation", "course_map")]
    pages = [p for p in pages if p.exists()]
    if not pages:
        print(f"error: no lesson pages in {html}; build the book first (make book or make book-fast)", file=sys.stderr)
        return 2
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("error: needs Playwright: pip install playwright (it drives the system's Chromium)", file=sys.stderr)
        return 2
    if not Path(args.chromium).exists():
        print(f"error: no Chromium at {args.chromium}; install it (Debian: apt-get install chromium) or pass --chromium",
              file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": args.width, "height": 900})
        print(f"{'page':<40} {'figures':>7} {'smallest figure text':>21}  problems")
        for path in pages:
            facts, problems = check_page(page, path.as_uri(), out / f"{path.stem}.png")
            px = facts["smallest_text_px"]
            print(f"{path.stem:<40} {facts['figures']:>7} {('-' if px is None else f'{px:.1f} px'):>21}  "
                  f"{'ok' if not problems else str(len(problems))}")
            for p in problems:
                print(f"    {p}")
            failed += bool(problems)
        browser.close()
    print(f"{len(pages)} pages at {args.width} px, screenshots in {out}: "
          + ("all readable" if not failed else f"{failed} page(s) with problems"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
