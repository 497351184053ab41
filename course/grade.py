"""Grade your exercises: ``python -m course.grade [FOLDER]`` prints a score table.

    python -m course.grade                           # finds notebooks/exercises (or exercises) from here
    python -m course.grade notebooks/exercises       # your files (what `make grade` runs)
    python -m course.grade --lesson lesson01 FOLDER  # one lesson
    python -m course.grade --solutions               # the reference solutions (all should pass)
    python -m course.grade --stubs                   # the untouched stubs (all should fail)
    python -m course.grade --many SUBMISSIONS --csv scores.csv   # instructors: one folder per learner

The table shows each failing exercise's whole message (what was expected, on which input).
The reference solutions are in the installed package, course/exercises/solutions/.
Exit status 0 when every graded exercise passes, 1 otherwise (with --many: 0 unless grading broke).
"""
import argparse
import csv
import io
import sys
from pathlib import Path

from .checkpoints import atomic_write
from .exercises import grading, lessons, solution_path, stub_path

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


def grade_many(root, lessons_=None, timeout=60.0):
    """{learner: [Result]} for every subfolder of ``root`` (one learner's lessonNN.py files each)."""
    learners = sorted(p for p in Path(root).iterdir() if p.is_dir())
    if not learners:
        raise FileNotFoundError(f"{root} holds no learner folders (expected {root}/NAME/lessonNN.py)")
    out = {}
    for folder in learners:
        print(f"grading {folder.name} ...", file=sys.stderr)
        out[folder.name] = grading.grade(folder, lessons_, timeout)
    return out


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
        writer.writerow([learner, *pts, sum(pts), sum(r.exercise.points for r in results)])
    return buf.getvalue()


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m course.grade", description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", help=f"folder holding your lessonNN.py files (default: {' or '.join(SEARCH)})")
    ap.add_argument("--lesson", action="append", help="grade only this lesson (repeatable), e.g. lesson01")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per exercise (default 60)")
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
        if args.many:
            many = grade_many(args.many, args.lesson, args.timeout)
            text = scores_csv(many)
            if args.csv:
                atomic_write(args.csv, lambda tmp: Path(tmp).write_text(text))
                print(f"scores of {len(many)} learners written to {args.csv}")
            else:
                print(text, end="")
            return 0
        paths = folder = None
        if args.solutions:
            paths = {lesson: solution_path(lesson) for lesson in lessons()}
        elif args.stubs:
            paths = {lesson: stub_path(lesson) for lesson in lessons()}
        else:
            folder = find_folder(args.folder)
            print(f"grading the files in {folder}/")
        results = grading.grade(folder, args.lesson, args.timeout, paths)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(grading.table(results))
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
