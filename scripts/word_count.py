"""Words a reader sees in each lesson: the prose of its markdown cells, without code, without
the collapsed notes (MyST ``dropdown`` blocks) and without the YAML header.

    python scripts/word_count.py [LESSON.md ...]      (default: every lesson in notebooks/)
"""
import re
import sys
from pathlib import Path

import jupytext

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
FENCE = re.compile(r"^(`{3,}|:{3,})\s*\{([\w-]+)\}")


def visible_words(text):
    """Words of the markdown cells of a MyST notebook's text, dropdown blocks left out."""
    nb = jupytext.reads(text, fmt="md:myst")
    words = 0
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        closing = None  # the fence that ends the dropdown we are in
        for line in cell.source.splitlines():
            if closing is not None:
                if line.strip() == closing:
                    closing = None
                continue
            m = FENCE.match(line.strip())
            if m and m.group(2) == "dropdown":
                closing = m.group(1)
                continue
            words += len(re.findall(r"[A-Za-z0-9][\w'-]*", line))
    return words


def main(argv=None):
    paths = [Path(p) for p in (argv or sys.argv[1:])] or sorted(NOTEBOOKS.glob("[0-9][0-9]*_*.md"))
    for path in paths:
        print(f"{visible_words(path.read_text()):6d}  {path.name}")


if __name__ == "__main__":
    main()
