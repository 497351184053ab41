"""Grade your exercises: ``python -m course.grade [FOLDER]`` prints a score table.

    python -m course.grade                           # finds notebooks/exercises (or exercises) from here
    python -m course.grade notebooks/exercises       # your files (what `make grade` runs)
    python -m course.grade --lesson lesson01 FOLDER  # one lesson
    python -m course.grade --solutions               # the reference solutions (all should pass)
    python -m course.grade --stubs                   # the untouched stubs (all should fail)
    python -m course.grade --many SUBMISSIONS --csv scores.csv   # instructors: one folder per learner

The table shows each failing exercise's whole message (what was expected, on which input), and
how the learner's code was isolated: in a bubblewrap sandbox where it is installed (Linux), else as
a plain child process. ``--many`` grades code you did not write, so it needs the sandbox unless
you pass ``--isolation process`` (course.exercises.isolation says what each protects).
The reference solutions are in the installed package, course/exercises/solutions/.
Exit status 0 when every graded exercise passes, 1 otherwise (with --many: 0 unless grading broke).
"""
import argparse
import csv
import io
import os
import sys
from pathlib import Path


def _no_writable_folder_on_the_import_path():
    """``python -m`` puts the working directory first on the import path; a learner's code could
    have planted a module there (sklearn/__init__.py) for the grader's own later imports. The
    course is installed, so the grader needs neither."""
    here = os.path.realpath(os.getcwd())
    sys.path[:] = [p for p in sys.path if p not in ("", ".") and os.path.realpath(p) != here]


_no_writable_folder_on_the_import_path()

from .checkpoints import atomic_write  # noqa: E402
from .exercises import grading, isolation, lessons, solution_path, stub_path  # noqa: E402

SEARCH = ("notebooks/exercises", "exercises")


def find_folder(folder=None):
    """The folder of lessonNN.py files: the argument, else the first of SEARCH that exists here."""
    if folder:
        return Path(folder)
    for candidate in SEARCH:
        if Path(candidate).is_dir():
            return Path(candidate)
    raise FileNotFoundError(f"no exercises folder found: looked for {' and '.join(SEARCH)} under {Path.cwd()}. "
                            "Open a lesson with exercises once (it creates notebooks/exercises/lessonNN.py), "
                            "or pass the folder: python -m course.grade FOLDER")


def grade_many(root, lessons_=None, timeout=60.0, isolation_mode=isolation.SANDBOX):
    """{learner: [Result]} for every subfolder of ``root`` (one learner's lessonNN.py files each).
    Symbolic links to folders are not followed (a learner cannot point the grader elsewhere)."""
    learners = sorted((p for p in Path(root).iterdir() if p.is_dir() and not p.is_symlink()), key=lambda p: os.fsencode(p.name))
    if not learners:
        raise FileNotFoundError(f"{root} holds no learner folders (expected {root}/NAME/lessonNN.py)")
    out = {}
    for folder in learners:
        print(f"grading {csv_name(folder.name)} ...", file=sys.stderr)
        out[folder.name] = grading.grade(folder, lessons_, timeout, isolation_mode=isolation_mode)
    return out


def csv_name(name):
    """A learner's folder name as a safe CSV cell: bytes that are not UTF-8 escaped as \\xNN, and a
    leading =, +, -, @, tab or carriage return quoted with ' so that no spreadsheet reads it as a formula."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def scores_csv(many) -> str:
    """One row per learner: points per exercise, total, and the maximum."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    names = None
    for learner, results in many.items():
        if names is None:
            names = [f"{r.exercise.lesson}.{r.exercise.name}" for r in results]
            writer.writerow(["learner", *names, "total", "max"])
        pts = [r.exercise.points if r.passed else 0 for r in results]
        writer.writerow([csv_name(learner), *pts, sum(pts), sum(r.exercise.points for r in results)])
    return buf.getvalue()


def _timeout(text):
    try:
        return grading.check_timeout(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m course.grade", description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", help=f"folder holding your lessonNN.py files (default: {' or '.join(SEARCH)})")
    ap.add_argument("--lesson", action="append", help="grade only this lesson (repeatable), e.g. lesson01")
    ap.add_argument("--timeout", type=_timeout, default=60.0, help="seconds allowed per exercise, at most 3600 (default 60)")
    ap.add_argument("--isolation", choices=("auto", "sandbox", "process"), default=None,
                    help="how to isolate the learner's code: sandbox (bubblewrap), process, or auto (the sandbox where "
                         "bubblewrap works; the default, except --many, which needs the sandbox unless you say process)")
    ap.add_argument("-v", "--verbose", action="store_true", help="(kept for compatibility: the table shows whole messages)")
    ap.add_argument("--many", metavar="ROOT", help="grade ROOT/LEARNER/lessonNN.py for every learner folder")
    ap.add_argument("--csv", metavar="FILE", help="with --many: write the scores to FILE (one row per learner)")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--solutions", action="store_true", help="grade the reference solutions")
    which.add_argument("--stubs", action="store_true", help="grade the untouched stubs")
    args = ap.parse_args(argv)
    unknown = set(args.lesson or []) - set(lessons())
    if unknown:
        ap.error(f"unknown lesson(s) {sorted(unknown)}; lessons with exercises: {lessons()}")
    if args.csv and not args.many:
        ap.error("--csv needs --many ROOT")
    try:
        mode = isolation.choose(args.isolation or ("sandbox" if args.many else "auto"))
        if args.many:
            many = grade_many(args.many, args.lesson, args.timeout, mode)  # every sandbox is gone when this returns
            text = scores_csv(many)
            if args.csv:
                atomic_write(args.csv, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
                print(f"scores of {len(many)} learners written to {args.csv} (isolation: {mode})")
            else:
                print(text, end="")
                print(f"isolation of the learners' code: {mode}", file=sys.stderr)
            return 0
        paths = folder = None
        if args.solutions:
            paths = {lesson: solution_path(lesson) for lesson in lessons()}
        elif args.stubs:
            paths = {lesson: stub_path(lesson) for lesson in lessons()}
        else:
            folder = find_folder(args.folder)
            print(f"grading the files in {folder}/")
        results = grading.grade(folder, args.lesson, args.timeout, paths, isolation_mode=mode)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(grading.table(results, isolation_mode=mode))
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
