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
    assert claim(False, "recall falls", recall=[0.5, 0.7]) is False
    assert "not checked" in capsys.readouterr().out
