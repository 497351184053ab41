"""The book's table of contents lists every lesson, and the lessons are text notebooks."""
import re
import subprocess

import jupytext
import pytest
import yaml

from conftest import NOTEBOOKS, ROOT, lesson_files


def toc_files():
    toc = yaml.safe_load((NOTEBOOKS / "_toc.yml").read_text())
    files = [toc["root"]]
    for chapter in toc.get("chapters", []):
        files.append(chapter["file"])
    for part in toc.get("parts", []):
        files += [c["file"] for c in part["chapters"]]
    return files


def test_every_lesson_is_in_the_table_of_contents_in_order():
    lessons = [p.stem for p in lesson_files()]
    listed = [f for f in toc_files() if re.match(r"\d\d[a-z]?_", f)]
    assert listed == lessons, f"_toc.yml lists {listed}; notebooks/ has lessons {lessons}"
    assert {"notation", "course_map"} <= set(toc_files()), "the reference pages must be in the book"


def test_every_lesson_links_the_notation_page_and_the_course_map():
    for path in lesson_files():
        text = path.read_text()
        assert "{doc}`notation`" in text and "{doc}`course_map`" in text, path.name


def test_course_map_executes_and_lists_every_lesson(tmp_path):
    from nbclient import NotebookClient

    nb = jupytext.read(NOTEBOOKS / "course_map.md")
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    table = nb.cells[1].outputs[0]["data"]["text/markdown"]
    for path in lesson_files():
        assert f"]({path.stem})" in table, path.name
    assert "`samplers`" in table and "`forward_noise` (1 pt)" in table


def test_lessons_are_myst_text_notebooks_with_a_python_kernel():
    for path in lesson_files():
        nb = jupytext.read(path)
        assert nb.metadata["kernelspec"]["name"] == "python3", path.name
        assert nb.metadata["jupytext"]["text_representation"]["format_name"] == "myst", path.name
        assert any(c.cell_type == "code" for c in nb.cells), path.name
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), f"{path.name} must open with its title"


def test_no_ipynb_is_tracked():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing is tracked")
    tracked = subprocess.run(["git", "ls-files", "*.ipynb"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert tracked == [], f"lessons are stored as text; remove {tracked}"


def test_every_figure_has_a_title_and_a_caption():
    """Every plotting cell sets a title, and the markdown after it starts with a bold caption."""
    for path in lesson_files():
        nb = jupytext.read(path)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code" and "plt.show()" in cell.source:
                assert "title" in cell.source, f"{path.name}, cell {i}: a figure without a title"
                nxt = nb.cells[i + 1] if i + 1 < len(nb.cells) else None
                assert nxt is not None and nxt.cell_type == "markdown" and nxt.source.lstrip().startswith("**Figure"), \
                    f"{path.name}, cell {i}: a figure must be followed by its caption ('**Figure N.M.** ...')"


def test_every_colon_directive_is_closed_on_its_own_line():
    """A ':::' fence with text after it is not a closing fence: the directive stays open and every
    code cell below it becomes markdown in the book (never executed; the build only warns, and the
    fast-mode test, which reads the file with jupytext, still sees the cells)."""
    for path in lesson_files():
        opened = closed = 0
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.match(r"^:{3,}\{", line):
                opened += 1
            elif line.startswith(":::"):
                assert re.fullmatch(r":{3,}\s*", line), f"{path.name}, line {number}: text after a closing ':::' ({line[:40]!r})"
                closed += 1
        assert opened == closed, f"{path.name}: {opened} ':::' directives opened, {closed} closed"


def test_figure_numbers_are_the_lessons_own_and_in_order():
    """Lesson N's captions are Figure N.1, N.2, ... in order, each number once."""
    for path in lesson_files():
        number = path.stem.split("_")[0].lstrip("0") or "0"
        found = re.findall(r"^\*\*Figure ([0-9a-z]+)\.([0-9]+)\.\*\*", path.read_text(), flags=re.M)
        assert all(n == number for n, _ in found), f"{path.name}: a caption numbered for another lesson: {found}"
        assert [int(k) for _, k in found] == list(range(1, len(found) + 1)), \
            f"{path.name}: captions numbered {[f'{n}.{k}' for n, k in found]}; expected {number}.1, {number}.2, ... in order"


def test_a_save_without_edits_changes_nothing(tmp_path):
    """JupyterLab saves a lesson through jupytext: with the folder's jupytext.toml, the text that
    comes back from a notebook round trip is the text that went in (no version stamp)."""
    import shutil
    import sys

    for name in ("jupytext.toml", lesson_files()[0].name):
        shutil.copy(NOTEBOOKS / name, tmp_path / name)
    lesson = tmp_path / lesson_files()[0].name
    run = lambda *args: subprocess.run([sys.executable, "-m", "jupytext", *args], cwd=tmp_path, capture_output=True, text=True)  # noqa: E731
    assert run("--to", "ipynb", lesson.name).returncode == 0
    lesson.unlink()
    out = run("--to", "md:myst", lesson.with_suffix(".ipynb").name)
    assert out.returncode == 0, out.stderr
    assert lesson.read_text() == lesson_files()[0].read_text(), "a round trip through a notebook changed the lesson's text"


def test_every_figure_is_readable_at_the_books_column_width():
    """The book shrinks a figure wider than its column (688 px at a 1280-px window) to fit. With the
    course style (course.plots.use_style: 100 dpi, no text below 10 pt) a figure at most 9 inches
    wide keeps every label at >= 10 screen pixels; scripts/screenshot_book.py measures the pages."""
    from course import plots

    assert plots.text_px_at_column(plots.MIN_FONT_PT, plots.MAX_WIDTH_IN) >= 10
    for path in lesson_files():
        text = path.read_text()
        if "plt.show()" not in text:
            continue
        assert "plots.use_style()" in text, f"{path.name}: call plots.use_style() once before the first figure"
        for width in re.findall(r"figsize=\(([^,]+),", text):
            try:
                w = float(width)
            except ValueError:
                raise AssertionError(f"{path.name}: figsize width {width!r} is not a number; give a literal width "
                                     f"(<= {plots.MAX_WIDTH_IN} in) so it can be checked") from None
            assert w <= plots.MAX_WIDTH_IN, f"{path.name}: a figure {w} in wide is shrunk below readable size; use <= {plots.MAX_WIDTH_IN} in (fewer panels per row)"
        for kind, size in re.findall(r"(fontsize|labelsize)=(\d+(?:\.\d+)?)", text):
            assert float(size) >= plots.MIN_FONT_PT, f"{path.name}: {kind}={size} is below {plots.MIN_FONT_PT} pt"


def test_the_repository_cites_papers_not_the_shared_reference_file():
    """REFERENCE.md lies beside the repository, not in it: no reader has it. The package, the
    lessons, the README, the benchmarks and the tests cite papers (or lessons) instead."""
    files = [p for pattern in ("course/**/*.py", "notebooks/*.md", "benchmarks/*.py", "scripts/*.py", "tests/*.py", "*.md")
             for p in ROOT.glob(pattern)]
    offenders = [f"{p.relative_to(ROOT)}:{i + 1}" for p in files if p.name != "test_book.py"
                 for i, line in enumerate(p.read_text().splitlines()) if re.search(r"REFERENCE(\.md| section)", line)]
    assert not offenders, f"cite the paper or the lesson instead of the shared REFERENCE file: {offenders}"


def test_no_lesson_repeats_a_cell_or_a_heading():
    """A botched edit once left lesson 5 with its Figure 2 section twice (one copy redrawing Figure
    5.1): the reader saw a heading and a caption twice, and the book paid for an ODE solve twice."""
    for path in lesson_files():
        nb = jupytext.read(path)
        seen = {}
        for i, cell in enumerate(nb.cells):
            text = cell.source.strip()
            assert len(text) < 40 or text not in seen, f"{path.name}: cell {i} repeats cell {seen.get(text)}: {text[:60]!r}"
            seen.setdefault(text, i)
        headings = [line for c in nb.cells if c.cell_type == "markdown" for line in c.source.splitlines() if line.startswith("#")]
        twice = sorted({h for h in headings if headings.count(h) > 1})
        assert not twice, f"{path.name}: headings that appear twice: {twice}"
