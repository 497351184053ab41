"""How long each lesson takes in full mode: the book's time budget, measured.

    python benchmarks/book.py [--fast] [--only 06 ...] [--slowest 3] [--json out.json] [--record] [--save] [--readme]

Executes each lesson (notebooks/NN_*.md) top to bottom, one at a time, each in its own process
with its own kernel, in a copy of notebooks/ (a learner's exercises are neither used nor changed),
exactly as the book build runs them. Prints, per lesson, the wall time, the kernel's peak memory
(resident set size) and the 5-minute budget beside it, then the sum against the book's 25
minutes, then the slowest cells of each lesson (cell index, first line, seconds). Run it with
nothing else on the machine: the numbers are the machine's, not the lesson's alone.

``--save`` merges each measured lesson's row (full mode, no error, nothing else said to be
running: the caller's word) into benchmarks/book_timings.json, and ``--readme`` rewrites the
README's timing table from that file: the README's numbers are the benchmark's, each with the date
it was measured.

``--fast`` measures fast mode (COURSE_FAST=1), what the tests execute. ``--record`` runs the
lessons with COURSE_RECORD=1: the sample sets a lesson measures live are written to its
measurement store (``course.measured``; e.g. data/digits_measured.json for lesson 6), so that the
next run reads them; run it after retraining a model or changing the sampling code.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
LESSON_BUDGET_S, BOOK_BUDGET_S = 300, 1500
TIMINGS = Path(__file__).resolve().parent / "book_timings.json"
README = ROOT / "README.md"
BEGIN, END = "<!-- book timings: written by python benchmarks/book.py --readme -->", "<!-- end of book timings -->"

# Runs in the child process: execute one lesson and report each cell's time (nbclient records
# when each cell started and finished in its metadata).
CHILD = r"""
import json, sys
import jupytext
from nbclient import NotebookClient
from datetime import datetime
path, work, out = sys.argv[1:4]
nb = jupytext.read(path)
client = NotebookClient(nb, timeout=3600, kernel_name="python3", resources={"metadata": {"path": work}}, record_timing=True)
error = None
try:
    client.execute()
except Exception as err:  # the report says which lesson failed and why; the benchmark goes on
    error = f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"
cells = []
for i, cell in enumerate(nb.cells):
    timing = cell.get("metadata", {}).get("execution", {})
    start, end = timing.get("iopub.execute_input") or timing.get("shell.execute_request"), timing.get("shell.execute_reply")
    if cell.cell_type == "code" and start and end:
        seconds = (datetime.fromisoformat(end.replace("Z", "+00:00")) - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()
        first = next((line for line in cell.source.splitlines() if line.strip()), "")
        cells.append(dict(index=i, first_line=first[:70], seconds=round(seconds, 2)))
json.dump(dict(cells=cells, error=error), open(out, "w"))
"""


def lessons(only=None):
    paths = sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]*_*.md"))
    if only:
        paths = [p for p in paths if any(p.name.startswith(o) for o in only)]
    return paths


def run_one(path, fast, record=False):
    """(wall seconds, peak RSS in MiB of the lesson's processes, per-cell report) of one lesson."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "notebooks"
        shutil.copytree(NOTEBOOKS, work, ignore=shutil.ignore_patterns("exercises", "_build", "*.ipynb"))
        env = {**os.environ, "MPLBACKEND": "Agg"}
        env.pop("COURSE_FAST", None)
        if fast:
            env["COURSE_FAST"] = "1"
        env.pop("COURSE_RECORD", None)
        if record:
            env["COURSE_RECORD"] = "1"
        out = Path(tmp) / "report.json"
        # a fresh process per lesson: its children (the kernel) are waited for, so RUSAGE_CHILDREN's
        # maximum resident size after it is the largest process of this lesson or of an earlier one;
        # the per-lesson peak is read in a wrapper that runs the lesson as its only child.
        wrapper = ("import resource, subprocess, sys, json; "
                   "subprocess.run(sys.argv[1:], check=False); "
                   "print(json.dumps(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))")
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-c", CHILD, str(work / path.name), str(work), str(out)],
                              env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        try:
            peak_mib = int(proc.stdout.strip().splitlines()[-1]) / 1024
        except (ValueError, IndexError):
            peak_mib = float("nan")
        report = json.loads(out.read_text()) if out.exists() else dict(cells=[], error=f"the runner failed: {proc.stderr[-500:]}")
    return seconds, peak_mib, report


def save(rows, path=TIMINGS):
    """Merge full-mode rows without errors into ``path`` (one row per lesson, the latest kept)."""
    kept = json.loads(path.read_text())["rows"] if path.exists() else []
    by_lesson = {r["lesson"]: r for r in kept}
    for r in rows:
        if not r["error"]:
            by_lesson[r["lesson"]] = {k: r[k] for k in ("lesson", "seconds", "peak_mib", "measured", "cpus")}
    on_disk = {p.stem for p in lessons()}
    table = [by_lesson[k] for k in sorted(by_lesson) if k in on_disk]
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(dict(rows=table), indent=1))
    tmp.replace(path)


def readme_table(path=TIMINGS):
    """The README's timing table (markdown) from ``path``; every lesson on disk must have a row."""
    rows = {r["lesson"]: r for r in json.loads(path.read_text())["rows"]} if path.exists() else {}
    missing = [p.stem for p in lessons() if p.stem not in rows]
    if missing:
        raise SystemExit(f"no full-mode timing for {missing}: run python benchmarks/book.py --only "
                         f"{' '.join(m[:3].rstrip('_') for m in missing)} --save first")
    lines = ["| lesson | full mode, seconds | peak memory, MiB | measured |", "|---|---|---|---|"]
    for p in lessons():
        r = rows[p.stem]
        flag = "" if r["seconds"] <= LESSON_BUDGET_S else " (over the 5-minute budget)"
        lines.append(f"| {p.stem} | {r['seconds']:.0f}{flag} | {r['peak_mib']} | {r['measured']}, {r['cpus']} CPUs |")
    total = sum(rows[p.stem]["seconds"] for p in lessons())
    lines.append(f"| all lessons | {total:.0f} ({total / 60:.0f} min; budget {BOOK_BUDGET_S // 60} min) | | |")
    return "\n".join(lines)


def write_readme(path=README, timings=TIMINGS):
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path} has no timing block ({BEGIN} ... {END}); add the two markers where the table goes")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(head + BEGIN + "\n" + readme_table(timings) + "\n" + END + tail)
    tmp.replace(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="fast mode (COURSE_FAST=1), as the tests run the lessons")
    ap.add_argument("--only", nargs="*", help="lesson numbers, e.g. 06 08")
    ap.add_argument("--record", action="store_true", help="write what the lessons measure live to their measurement stores")
    ap.add_argument("--slowest", type=int, default=3, help="slowest cells listed per lesson")
    ap.add_argument("--json", help="also write the table to this file")
    ap.add_argument("--save", action="store_true", help=f"merge the measured rows into {TIMINGS.name}")
    ap.add_argument("--readme", action="store_true", help=f"rewrite the README's timing table from {TIMINGS.name}")
    ap.add_argument("--readme-only", action="store_true", help="rewrite the README's table and run nothing")
    args = ap.parse_args(argv)
    if args.save and args.fast:
        ap.error("--save keeps full-mode timings only")
    if args.readme_only:
        write_readme()
        return 0
    if args.fast and args.record:
        ap.error("--record stores full-mode measurements; it cannot be combined with --fast")
    mode = ("fast" if args.fast else "full") + (", recording" if args.record else "")
    print(f"# lessons in {mode} mode, one at a time, on {os.cpu_count()} CPU(s); {datetime.now():%Y-%m-%d %H:%M}")
    print(f"{'lesson':42s} {'seconds':>8s} {'peak MiB':>9s} {'budget':>7s}")
    rows = []
    for path in lessons(args.only):
        seconds, peak, report = run_one(path, args.fast, args.record)
        ok = "ok" if seconds <= LESSON_BUDGET_S else "OVER"
        print(f"{path.stem:42s} {seconds:8.1f} {peak:9.0f} {ok:>7s}" + (f"  ERROR {report['error']}" if report["error"] else ""), flush=True)
        rows.append(dict(lesson=path.stem, seconds=round(seconds, 1), peak_mib=round(peak) if peak == peak else None, error=report["error"],
                         measured=f"{datetime.now():%Y-%m-%d}", cpus=os.cpu_count(),
                         slowest=sorted(report["cells"], key=lambda c: -c["seconds"])[: args.slowest]))
    total = sum(r["seconds"] for r in rows)
    print(f"{'sum':42s} {total:8.1f} {'':9s} {'ok' if total <= BOOK_BUDGET_S else 'OVER':>7s}  (budget {BOOK_BUDGET_S} s)")
    print(f"\n# slowest cells (lesson, cell index, seconds, first line)")
    for r in rows:
        for c in r["slowest"]:
            print(f"{r['lesson'][:2]}  cell {c['index']:3d}  {c['seconds']:7.1f} s  {c['first_line']}")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(mode=mode, cpus=os.cpu_count(), rows=rows, total_seconds=round(total, 1)), indent=1))
    if args.save:
        save(rows)
    if args.readme:
        write_readme()
    return 1 if any(r["error"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
