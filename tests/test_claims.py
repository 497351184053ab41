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
