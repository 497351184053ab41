"""Measurements made once and kept: the scores of sample sets that take minutes to draw.

A lesson's sweep over guiders, scales and seeds draws tens of thousands of samples; on a laptop
that is a quarter of an hour, every time the lesson runs. A :class:`Store` keeps each
measurement's scores (a flat dict of numbers) in a JSON file, under a key that says what was
measured (guider, w, n, seed, sampler steps, ...), beside a **fingerprint** of what it was measured
with: the bytes of the model files and of the code that samples and scores. The lesson asks the
store for each measurement:

* the key is stored and the fingerprint matches: the stored scores come back (no sampling);
* anything else (a key never recorded, a retrained model, changed sampler code): it is measured
  now, live - a stale store makes a lesson slow, never wrong.

The store is written only when recording (``COURSE_RECORD=1``; the lesson's own code decides what
is measured, so recording is running the lesson: ``python benchmarks/book.py --record --only 06``).
A lesson re-measures at least one stored key live and checks that it agrees (``Store.verify``), so
the file is tested every time the lesson runs.
"""
import ast
import hashlib
import io
import json
import math
import os
import time
import tokenize
from datetime import datetime, timezone
from pathlib import Path

from . import checkpoints

RECORD_ENV = "COURSE_RECORD"
RECORD_COMMAND = "python benchmarks/book.py --record --only <lesson number>"


def _code(path):
    """A Python file's code without its comments and docstrings, whitespace collapsed: what it
    computes, as the same text on every Python version (syntax trees and token streams are not)."""
    source = path.read_text()
    docstring_lines = set()
    for node in ast.walk(ast.parse(source, filename=str(path))):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            docstring_lines.update(range(body[0].lineno, body[0].end_lineno + 1))
    comment_at = {tok.start[0]: tok.start[1] for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                  if tok.type == tokenize.COMMENT}
    kept = [line[:comment_at.get(i, len(line))] for i, line in enumerate(source.splitlines(), 1) if i not in docstring_lines]
    return " ".join(" ".join(kept).split()).encode()


def fingerprint(*paths):
    """sha256 (hex, 16 characters) of the named files, in the order given: a .py file by its code
    (without comments, docstrings and layout, so that rewording one keeps the store), any other
    file by its bytes. A missing file is an error."""
    h = hashlib.sha256()
    for p in map(Path, paths):
        if not p.is_file():
            raise FileNotFoundError(f"cannot fingerprint {p}: no such file")
        h.update(p.name.encode() + b"\0" + (_code(p) if p.suffix == ".py" else p.read_bytes()) + b"\0")
    return h.hexdigest()[:16]


def _key(key):
    if not isinstance(key, dict) or not key:
        raise TypeError(f"a measurement's key is a non-empty dict (e.g. dict(guider='CFG', w=2.0, n=500, seed=0)), got {key!r}")
    return json.dumps(key, sort_keys=True)


class Store:
    """Scores kept in ``path`` under ``fingerprint``; see the module's docstring.

    ``store(key, measure)``: the stored scores of ``key`` (a dict of JSON values) if the file has
    them under this fingerprint, else ``measure()`` (a dict of numbers), recorded when ``record``.
    ``path=None``: nothing stored, everything measured (fast mode, or models trained in the lesson).
    ``record``: write what is measured live (default: the ``COURSE_RECORD`` environment variable).
    """

    def __init__(self, path, fingerprint, record=None):
        self.path = None if path is None else Path(path)
        self.fingerprint = fingerprint
        self.record = os.environ.get(RECORD_ENV, "") not in ("", "0") if record is None else bool(record)
        self.stored, self.live, self.live_seconds, self.saved_seconds = 0, 0, 0.0, 0.0
        self.rows = {}
        self._served = set()
        self.recorded_on = None
        if self.path is not None and self.path.exists():
            try:
                state = json.loads(self.path.read_text())
                rows = state["rows"]
                keys = [_key(r["key"]) for r in rows]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"{self.path} is not a measurement store ({type(err).__name__}: {err}); delete it and "
                                 f"record it again: {RECORD_COMMAND}") from err
            if state.get("fingerprint") == fingerprint:
                self.rows = dict(zip(keys, rows))
                self.recorded_on = state.get("recorded_on")

    def __call__(self, key, measure):
        k = _key(key)
        if k in self.rows:
            if k not in self._served:  # a set asked for twice would have been drawn once: count it once
                self._served.add(k)
                self.stored += 1
                self.saved_seconds += self.rows[k].get("seconds", 0.0)
            return dict(self.rows[k]["scores"])
        t0 = time.perf_counter()
        scores = measure()
        seconds = time.perf_counter() - t0
        self.live += 1
        self.live_seconds += seconds
        bad = {name: v for name, v in scores.items() if not isinstance(v, (int, float)) or not math.isfinite(v)}
        if bad:
            raise ValueError(f"measurement {key} returned scores that are not finite numbers: {bad}")
        if self.record and self.path is not None:
            self.rows[k] = dict(key=key, scores=scores, seconds=round(seconds, 2))
            self._write()
        return scores

    def verify(self, key, measure, tolerance):
        """Measure ``key`` now even if stored; returns (now, stored or None, agrees) where agrees says
        that every score is within ``tolerance[name]`` (absolute) of the stored one (True if nothing
        was stored: there is nothing to disagree with)."""
        now = measure()
        row = self.rows.get(_key(key))
        if row is None:
            if self.record and self.path is not None:
                self.rows[_key(key)] = dict(key=key, scores=now, seconds=0.0)
                self._write()
            return now, None, True
        stored = row["scores"]
        agrees = all(abs(now[name] - stored[name]) <= tol for name, tol in tolerance.items())
        return now, stored, agrees

    def summary(self):
        """One line for the lesson's output: how much came from the store and how much was measured now."""
        where = f" (recorded {self.recorded_on})" if self.recorded_on else ""
        return (f"{self.stored} sample set(s) from {self.path.name if self.path else 'no store'}{where}, "
                f"saving {self.saved_seconds:.0f} s of sampling; {self.live} measured now ({self.live_seconds:.0f} s)")

    def _write(self):
        state = dict(fingerprint=self.fingerprint, recorded_on=datetime.now(timezone.utc).strftime("%Y-%m-%d"),
                     command=RECORD_COMMAND,
                     rows=sorted(self.rows.values(), key=lambda r: _key(r["key"])))
        checkpoints.atomic_write(self.path, lambda tmp: Path(tmp).write_text(json.dumps(state, indent=1)))
