"""A lesson's sentence that its numbers do not support fails the book build (full mode), and only
prints a note in fast mode."""
import pytest

from course.claims import ClaimFailed, claim


def test_a_false_claim_fails_in_full_mode_with_the_sentence_and_the_numbers(monkeypatch):
    monkeypatch.delenv("COURSE_FAST", raising=False)
    assert claim(2 > 1, "two beats one")
    with pytest.raises(ClaimFailed, match=r"the lesson says 'recall falls', but its numbers do not show it: recall = \[0.5, 0.7\]"):
        claim(False, "recall falls", recall=[0.5, 0.7])


def test_a_false_claim_is_only_noted_in_fast_mode(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_FAST", "1")
    assert not claim(False, "recall falls", recall=[0.5, 0.7])
    assert "not checked" in capsys.readouterr().out


def test_a_claim_shows_nothing_when_it_ends_a_notebook_cell():
    """A cell ending with claim(...) must not print a stray 'True' in the book: IPython calls
    _ipython_display_ instead of showing the repr, and ours shows nothing."""
    verdict = claim(True, "holds")
    assert verdict and verdict._ipython_display_() is None


def test_a_claim_resting_on_nan_fails_whatever_its_condition(monkeypatch):
    import math

    import torch

    from course.claims import ClaimFailed, claim

    monkeypatch.delenv("COURSE_FAST", raising=False)
    errors = [1e-9, math.nan]
    assert max(errors) < 1e-6  # the trap: max skips the NaN, so the condition holds
    with pytest.raises(ClaimFailed, match="errors contain\\(s\\) NaN"):
        claim(max(errors) < 1e-6, "every error is below 1e-6", errors=errors)
    with pytest.raises(ClaimFailed, match="NaN"):
        claim(True, "a tensor with a NaN", t=torch.tensor([1.0, float("nan")]))
    with pytest.raises(ClaimFailed, match="NaN"):
        claim(True, "a nested NaN", d={"a": [1.0, {"b": math.nan}]})
    assert claim(True, "infinity is a number", gain=-math.inf)  # inf is not NaN


def test_the_makefile_reads_course_fast_as_the_lessons_do(monkeypatch):
    import shutil
    import subprocess

    from conftest import ROOT
    from course.settings import fast_mode

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    for value in ("TRUE", " On", "yes", "1", "0", "", "no"):
        out = subprocess.run(["make", "-n", "book", f"COURSE_FAST={value}"], cwd=ROOT, capture_output=True, text=True, timeout=60)
        monkeypatch.setenv("COURSE_FAST", value)
        assert ("FAST MODE" in out.stdout) == fast_mode(), (value, out.stdout[-500:])
