"""course.measured: stored measurements come back only under their fingerprint; anything else is measured live."""
import json

import pytest

from course import digits, measured, toy_models


def scores(fd=20.0):
    return dict(fd=fd, precision=0.5, recall=0.7, accuracy=0.9)


class Counting:
    def __init__(self, fd=20.0):
        self.calls, self.fd = 0, fd

    def __call__(self):
        self.calls += 1
        return scores(self.fd)


def test_fingerprint_ignores_comments_and_docstrings_not_code(tmp_path):
    a = tmp_path / "m.py"
    a.write_text('"""Module."""\ndef f(x):\n    """Doc."""\n    return x + 1  # one\n')
    before = measured.fingerprint(a)
    a.write_text('"""Reworded."""\n# a comment\ndef f(x):\n    """Other doc."""\n    return x + 1\n')
    assert measured.fingerprint(a) == before
    a.write_text('def f(x):\n    return x + 2\n')
    assert measured.fingerprint(a) != before
    b = tmp_path / "w.bin"
    b.write_bytes(b"\x00\x01")
    assert measured.fingerprint(a, b) != measured.fingerprint(a)
    with pytest.raises(FileNotFoundError, match="no such file"):
        measured.fingerprint(tmp_path / "missing.safetensors")


def test_record_then_read_then_stale(tmp_path):
    path, key = tmp_path / "store.json", dict(guider="CFG", w=2.0, n=500, seed=0)
    m = Counting()
    rec = measured.Store(path, "fp1", record=True)
    assert rec(key, m) == scores() and m.calls == 1 and path.exists()
    again = measured.Store(path, "fp1", record=False)
    assert again(key, m) == scores() and m.calls == 1, "a stored key under the same fingerprint is not measured again"
    assert again.stored == 1 and again.live == 0
    again(key, m)
    assert again.stored == 1, "a stored set asked for twice is counted (and its seconds saved) once"
    assert again(dict(key, seed=1), m) == scores() and m.calls == 2, "a key never recorded is measured live"
    stale = measured.Store(path, "fp2", record=False)
    stale(key, m)
    assert m.calls == 3, "a changed fingerprint (retrained model, changed sampler) measures live"
    assert json.loads(path.read_text())["fingerprint"] == "fp1", "without record the file is not written"
    assert "1 sample set(s) from store.json" in again.summary()


def test_not_recording_never_writes_and_no_path_stores_nothing(tmp_path):
    path = tmp_path / "store.json"
    measured.Store(path, "fp", record=False)(dict(a=1), Counting())
    assert not path.exists()
    m = Counting()
    s = measured.Store(None, None, record=True)
    s(dict(a=1), m), s(dict(a=1), m)
    assert m.calls == 2


def test_record_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(measured.RECORD_ENV, "1")
    assert measured.Store(tmp_path / "s.json", "fp").record
    monkeypatch.setenv(measured.RECORD_ENV, "0")
    assert not measured.Store(tmp_path / "s.json", "fp").record


def test_bad_input_is_named(tmp_path):
    path = tmp_path / "store.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a measurement store.*record it again"):
        measured.Store(path, "fp")
    path.write_text(json.dumps({"rows": [{"no key": 1}]}))
    with pytest.raises(ValueError, match="not a measurement store"):
        measured.Store(path, "fp")
    s = measured.Store(tmp_path / "ok.json", "fp", record=True)
    with pytest.raises(ValueError, match="not finite numbers"):
        s(dict(a=1), lambda: dict(fd=float("nan")))
    with pytest.raises(TypeError, match="non-empty dict"):
        s("CFG", Counting())


def test_verify_compares_with_the_stored_scores(tmp_path):
    path, key = tmp_path / "store.json", dict(a=1)
    measured.Store(path, "fp", record=True)(key, Counting(20.0))
    s = measured.Store(path, "fp", record=False)
    now, stored, agrees = s.verify(key, Counting(20.3), tolerance=dict(fd=0.5))
    assert agrees and stored["fd"] == 20.0 and now["fd"] == 20.3
    assert not s.verify(key, Counting(21.0), tolerance=dict(fd=0.5))[2]
    assert s.verify(dict(a=2), Counting(), tolerance=dict(fd=0.5))[1] is None


def test_the_committed_digits_store_is_current():
    """Lesson 6 reads data/digits_measured.json; if the models or the sampling code changed since it
    was recorded, the lesson still runs (live) but takes a quarter of an hour: record it again."""
    store = digits.measurement_store(record=False)
    assert store.rows, (f"{store.path} is missing or stale (its fingerprint is not {store.fingerprint}): "
                        f"record it again with {measured.RECORD_COMMAND.replace('<lesson number>', '06')}")


def test_the_committed_toy_store_is_current():
    """Lesson 8 reads data/toy_measured.json for its sweep on the moons (96 sample sets)."""
    store = toy_models.measurement_store(record=False)
    assert store.rows, (f"{store.path} is missing or stale (its fingerprint is not {store.fingerprint}): "
                        f"record it again with {measured.RECORD_COMMAND.replace('<lesson number>', '08')}")
    methods = {r["key"]["method"] for r in store.rows.values()}
    assert len(methods) == 12 and all(r["key"]["impl"] != "yours" for r in store.rows.values()), methods
