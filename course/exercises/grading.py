"""Run the checks on a learner's files, each in its own process with a time limit.

A learner's function that raises, returns the wrong shape, returns NaN or never returns fails
its own exercise with a message; it never stops the grading of the others.
"""
import multiprocessing as mp
import traceback
from dataclasses import dataclass
from pathlib import Path

from . import EXERCISES, load_file


@dataclass
class Result:
    exercise: object
    passed: bool
    message: str


def _first_line_in(tb, path):
    """The traceback entry (file:line) inside the learner's file, if any, to point at."""
    frames = [f for f in traceback.extract_tb(tb) if Path(f.filename).resolve() == Path(path).resolve()]
    return f" (at {Path(path).name}, line {frames[-1].lineno}: {frames[-1].line})" if frames else ""


def _run(exercise, path, conn):
    """Child process: load the file, run the check, send (passed, message)."""
    try:
        import torch

        torch.set_num_threads(1)
        try:
            module = load_file(path, exercise.lesson)
        except Exception as err:  # a syntax error etc. in the learner's file
            conn.send((False, f"could not import {path}: {type(err).__name__}: {err}"))
            return
        fn = getattr(module, exercise.name, None)
        if fn is None:
            conn.send((False, f"{Path(path).name} defines no function named {exercise.name}"))
            return
        exercise.check(fn)
        conn.send((True, ""))
    except NotImplementedError as err:
        conn.send((False, f"not written yet (it raises NotImplementedError: {err})"))
    except AssertionError as err:
        conn.send((False, str(err) or "a check failed"))
    except BaseException as err:
        conn.send((False, f"your code raised {type(err).__name__}: {err}{_first_line_in(err.__traceback__, path)}"))
    finally:
        conn.close()


def grade_one(exercise, path, timeout=60.0) -> Result:
    """Grade one exercise of the file at ``path`` in a separate process."""
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_run, args=(exercise, str(path), send), daemon=True)
    proc.start()
    send.close()
    if receive.poll(timeout):
        try:
            passed, message = receive.recv()
        except EOFError:
            passed, message = False, "the check's process died (out of memory, or a crash in native code?)"
    else:
        passed, message = False, f"no answer within {timeout:g} s: an infinite loop, or far too slow?"
    proc.join(1)
    if proc.is_alive():
        proc.kill()
        proc.join()
    return Result(exercise, passed, message)


def grade(folder=None, lessons=None, timeout=60.0, paths=None):
    """Grade every exercise (or those of ``lessons``) with the files ``folder/lessonNN.py``
    (or an explicit ``paths`` dict lesson -> file). Returns a list of :class:`Result`."""
    results = []
    for ex in EXERCISES:
        if lessons and ex.lesson not in lessons:
            continue
        path = Path(paths[ex.lesson]) if paths else Path(folder) / f"{ex.lesson}.py"
        if not path.exists():
            results.append(Result(ex, False, f"{path} does not exist (open the lesson once to create it)"))
            continue
        results.append(grade_one(ex, path, timeout))
    return results


def table(results, width=100) -> str:
    """The score table: exercise, points, pass/fail and the first line of the failure message."""
    rows = [("exercise", "points", "result", "message")]
    for r in results:
        first = r.message.strip().splitlines()[0] if r.message.strip() else ""
        if len(first) > width:
            first = first[: width - 3] + "..."
        pts = f"{r.exercise.points if r.passed else 0}/{r.exercise.points}"
        rows.append((f"{r.exercise.lesson}.{r.exercise.name}", pts, "pass" if r.passed else "FAIL", first))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(row[i].ljust(widths[i]) for i in range(3)) + "  " + row[3] for row in rows]
    lines.insert(1, "-" * min(sum(widths) + 6 + width, 160))
    got = sum(r.exercise.points for r in results if r.passed)
    total = sum(r.exercise.points for r in results)
    lines.append(f"\nscore: {got}/{total} points, {sum(r.passed for r in results)}/{len(results)} exercises passed")
    return "\n".join(lines)
