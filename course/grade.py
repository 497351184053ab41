"""Grade your exercises: ``python -m course.grade [FOLDER]`` prints a score table.

    python -m course.grade notebooks/exercises       # your files (what `make grade` runs)
    python -m course.grade --lesson lesson01 FOLDER  # one lesson
    python -m course.grade --solutions               # the reference solutions (all should pass)
    python -m course.grade --stubs                   # the untouched stubs (all should fail)

Exit status 0 when every graded exercise passes, 1 otherwise.
"""
import argparse
import sys

from .exercises import grading, lessons, solution_path, stub_path


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m course.grade", description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", default="exercises", help="folder holding your lessonNN.py files")
    ap.add_argument("--lesson", action="append", help="grade only this lesson (repeatable), e.g. lesson01")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per exercise (default 60)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each failure's whole message")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--solutions", action="store_true", help="grade the reference solutions")
    which.add_argument("--stubs", action="store_true", help="grade the untouched stubs")
    args = ap.parse_args(argv)
    unknown = set(args.lesson or []) - set(lessons())
    if unknown:
        ap.error(f"unknown lesson(s) {sorted(unknown)}; lessons with exercises: {lessons()}")
    paths = None
    if args.solutions:
        paths = {lesson: solution_path(lesson) for lesson in lessons()}
    elif args.stubs:
        paths = {lesson: stub_path(lesson) for lesson in lessons()}
    results = grading.grade(args.folder, args.lesson, args.timeout, paths)
    print(grading.table(results))
    if args.verbose:
        for r in results:
            if not r.passed:
                print(f"\n{r.exercise.lesson}.{r.exercise.name}:\n  " + r.message.replace("\n", "\n  "))
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
