"""benchmarks/book.py keeps the lessons' full-mode timings and writes the README's table from them."""
import importlib.util
import json

import pytest

from conftest import ROOT, lesson_files


@pytest.fixture
def book():
    spec = importlib.util.spec_from_file_location("bench_book", ROOT / "benchmarks" / "book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(lesson, seconds, error=None):
    return dict(lesson=lesson, seconds=seconds, peak_mib=900, error=error, measured="2026-12-02", cpus=2, slowest=[])


def test_timings_merge_per_lesson_and_the_readme_table_is_written_from_them(book, tmp_path):
    timings, readme = tmp_path / "t.json", tmp_path / "README.md"
    stems = [p.stem for p in lesson_files()]
    book.save([row(s, 100.0) for s in stems[:-1]], timings)
    with pytest.raises(SystemExit, match=f"no full-mode timing for \\['{stems[-1]}'\\]"):
        book.readme_table(timings)
    book.save([row(stems[-1], 400.0), row(stems[0], 50.0), row(stems[1], 9.0, error="boom")], timings)
    kept = {r["lesson"]: r["seconds"] for r in json.loads(timings.read_text())["rows"]}
    assert kept[stems[0]] == 50.0, "a newer measurement replaces the older one"
    assert kept[stems[1]] == 100.0, "a lesson that failed keeps its last good timing"
    table = book.readme_table(timings)
    assert all(f"| {s} |" in table for s in stems)
    assert "400 (over the 5-minute budget)" in table
    total = 50.0 + 100.0 * (len(stems) - 2) + 400.0
    assert f"| all lessons | {total:.0f} " in table
    readme.write_text(f"intro\n{book.BEGIN}\nold table\n{book.END}\noutro\n")
    book.write_readme(readme, timings)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old table" not in text and table in text
    readme.write_text("no markers here\n")
    with pytest.raises(SystemExit, match="no timing block"):
        book.write_readme(readme, timings)



def test_the_readme_shows_the_benchmarks_table_for_every_lesson(book):
    """The README's lesson timings are the benchmark's (benchmarks/book_timings.json, written by
    python benchmarks/book.py --save --readme), for every lesson on disk, never typed by hand."""
    text = (ROOT / "README.md").read_text()
    assert book.BEGIN in text and book.END in text, "the README lost its timing block"
    shown = text.split(book.BEGIN, 1)[1].split(book.END, 1)[0].strip()
    assert shown == book.readme_table(book.TIMINGS), ("the README's timing table is not the benchmark's: run "
                                                      "python benchmarks/book.py --readme-only (or measure again with --save --readme)")
