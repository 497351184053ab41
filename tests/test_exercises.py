"""The exercise pattern: every grader fails on its untouched stub and passes on the reference
solution, and bad learner code fails its own exercise with a message without stopping the rest."""
import subprocess
import sys

import pytest

from conftest import run_main
from course import exercises
from course import grade as grade_cmd
from course.exercises import EXERCISES, grading

pytestmark = pytest.mark.grader  # see conftest: grader tests share one worker

IDS = [f"{e.lesson}.{e.name}" for e in EXERCISES]


def test_grader_tests_share_one_worker(request):
    """Under make test (pytest-xdist, --dist loadgroup) xdist has put this test in the grader group.
    xdist marks a group by renaming the test; where that rename is lost (pytest 9.2 with xdist 3.8,
    pytest-dev/pytest-xdist#1386) the groups are silently ignored and the grader tests run side by side."""
    if hasattr(request.config, "workerinput") and request.config.getvalue("loadgroup"):
        assert request.node.nodeid.endswith("@grader"), f"{request.node.nodeid} is not in xdist's grader group"


# Every grader failing on its stub and passing on its solution is tested once, through the
# command a grader runs (test_grade_command_on_*, below): each exercise's row and message.


def test_every_exercise_has_stub_solution_and_check():
    for ex in EXERCISES:
        assert callable(ex.check) and callable(ex.solution)
        stub = exercises.load_file(exercises.stub_path(ex.lesson), ex.lesson)
        assert callable(getattr(stub, ex.name)), f"stub for {ex.lesson} lacks {ex.name}"


def _normalised(text):
    return "".join(text.split()).lower().replace("'", '"')


def _solution_pieces(ex):
    """Every statement and every right-hand side of the reference solution's function, normalised
    (no spaces), that is long enough to give something away (at least 8 characters)."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(ex.solution))
    pieces = set()
    for node in ast.walk(tree.body[0]):
        if isinstance(node, (ast.Return, ast.Assign, ast.AugAssign)) and node.value is not None:
            pieces.add(_normalised(ast.unparse(node.value)))
        if isinstance(node, ast.stmt) and not isinstance(node, (ast.FunctionDef, ast.If, ast.For, ast.While)):
            pieces.add(_normalised(ast.unparse(node)))
        if isinstance(node, ast.Call):
            pieces.add(_normalised(ast.unparse(node)))
    return {p for p in pieces if len(p) >= 8}


@pytest.mark.parametrize("ex", EXERCISES, ids=IDS)
def test_hints_come_in_tiers_and_never_give_a_solution_line(ex):
    stub = exercises.load_file(exercises.stub_path(ex.lesson), ex.lesson)
    tiers = getattr(stub, "HINTS", {}).get(ex.name)
    assert tiers and len(tiers) >= 2, f"{ex.lesson}.{ex.name}: HINTS needs at least two tiers (the idea, then the shape)"
    try:
        getattr(stub, ex.name)(*([None] * getattr(stub, ex.name).__code__.co_argcount))
    except NotImplementedError as err:
        message = str(err)
    except Exception:  # noqa: BLE001 - a stub that fails before raising gives no message to read
        message = ""
    for text in list(tiers) + [message]:
        flat = _normalised(text)
        given = [p for p in _solution_pieces(ex) if p in flat]
        assert not given, f"{ex.lesson}.{ex.name}: the hint {text!r} contains the solution's {given}"


BAD_LESSON00 = {
    "raises": "def sample_mixture(weights, means, stds, n, generator=None):\n    return 1 / 0\n",
    "wrong_shape": "import torch\ndef sample_mixture(weights, means, stds, n, generator=None):\n    return torch.zeros(n, 3)\n",
    "nan": "import torch\ndef sample_mixture(weights, means, stds, n, generator=None):\n    return torch.full((n, 2), float('nan'))\n",
    "forever": "def sample_mixture(weights, means, stds, n, generator=None):\n    while True:\n        pass\n",
    "syntax_error": "def sample_mixture(:\n",
    "missing": "x = 1\n",
}
EXPECTED = {
    "raises": "ZeroDivisionError",
    "wrong_shape": "should return shape [20000, 2]; got [20000, 3]",
    "nan": "NaN",
    "forever": "no answer within",
    "syntax_error": "could not import",
    "missing": "defines no function named sample_mixture",
}


@pytest.mark.parametrize("kind", list(BAD_LESSON00))
def test_bad_learner_code_fails_with_a_message_and_grading_goes_on(kind, tmp_path):
    (tmp_path / "lesson00.py").write_text(BAD_LESSON00[kind])
    # another lesson: the reference solutions, so that grading is seen to go on after the failure
    (tmp_path / "lesson03.py").write_text(exercises.solution_path("lesson03").read_text())
    results = grading.grade(tmp_path, ["lesson00", "lesson03"], timeout=5 if kind == "forever" else 60, guard=False)
    first, rest = results[0], results[1:]
    assert not first.passed and EXPECTED[kind] in first.message, first.message
    assert rest and all(r.passed for r in rest), [r.message for r in rest]


def test_workspace_copies_the_stub_once_and_never_overwrites(tmp_path):
    folder = tmp_path / "exercises"
    mine = exercises.workspace("lesson00", folder)
    path = folder / "lesson00.py"
    assert path.read_text() == exercises.stub_path("lesson00").read_text()
    path.write_text(path.read_text() + "\n# my work\n")
    exercises.workspace("lesson00", folder)
    assert path.read_text().endswith("# my work\n")
    assert mine.__lesson__ == "lesson00"


def test_pick_falls_back_to_the_reference_until_written(tmp_path, capsys):
    import torch

    mine = exercises.workspace("lesson01", tmp_path)
    forward_noise = exercises.pick(mine, "forward_noise")
    x0, eps = torch.ones(2, 2), torch.zeros(2, 2)
    torch.testing.assert_close(forward_noise(x0, eps, 0.25), 0.5 * x0)
    assert "using the reference solution" in capsys.readouterr().out
    # a wrong function is never used silently: the lesson says why and uses the reference
    (tmp_path / "lesson01.py").write_text("def forward_noise(x0, eps, abar_t):\n    return x0 * 0 + 42\n")
    mine = exercises.workspace("lesson01", tmp_path)
    torch.testing.assert_close(exercises.pick(mine, "forward_noise")(x0, eps, 0.25), 0.5 * x0)
    note = capsys.readouterr().out
    assert "does not pass its check yet" in note and "expected" in note and "using the reference solution" in note, note
    # a right one is used, and the lesson says so
    (tmp_path / "lesson01.py").write_text("def forward_noise(x0, eps, abar_t):\n"
                                          "    import torch\n    a = torch.as_tensor(abar_t, dtype=x0.dtype).reshape(-1, 1)\n"
                                          "    return a.sqrt() * x0 + (1 - a).sqrt() * eps\n")
    mine = exercises.workspace("lesson01", tmp_path)
    torch.testing.assert_close(exercises.pick(mine, "forward_noise")(x0, eps, 0.25), 0.5 * x0)
    assert "using your function" in capsys.readouterr().out


def run_grade(*args):
    """The grade command as a real process (the solutions' test: the command as a grader runs it)."""
    return subprocess.run([sys.executable, "-m", "course.grade", *args], capture_output=True, text=True, timeout=600)


def rows_of(out):
    """{"lesson03.cfg": (row line, message line under it)} from the grade command's table."""
    lines = out.stdout.splitlines()
    names = {f"{ex.lesson}.{ex.name}" for ex in EXERCISES}
    return {line.split()[0]: (line, lines[i + 1] if i + 1 < len(lines) else "")
            for i, line in enumerate(lines) if line.split() and line.split()[0] in names}


def test_grade_command_on_stubs_reports_every_exercise_failed():
    out = run_main(grade_cmd.main, "--stubs")  # in this process: the solutions' test below runs the real one
    assert out.returncode == 1, out.stdout + out.stderr
    rows = rows_of(out)
    assert sorted(rows) == sorted(IDS), f"exercises without a row: {sorted(set(IDS) - set(rows))}"
    wrong = {k: r for k, r in rows.items() if "FAIL" not in r[0] or "not written yet" not in r[1]}
    assert not wrong, f"these stubs should fail with 'not written yet' under their row: {wrong}"
    assert f"score: 0/{sum(e.points for e in EXERCISES)} points" in out.stdout


def test_grade_command_on_solutions_reports_every_exercise_passed():
    out = run_grade("--solutions")
    rows = rows_of(out)
    assert sorted(rows) == sorted(IDS), f"exercises without a row: {sorted(set(IDS) - set(rows))}"
    failed = {k: r for k, r in rows.items() if r[0].split()[-1] != "pass"}
    assert not failed, f"these reference solutions fail their checks: {failed}"
    assert out.returncode == 0, out.stdout + out.stderr
    total = sum(e.points for e in EXERCISES)
    assert f"score: {total}/{total} points, {len(EXERCISES)}/{len(EXERCISES)} exercises passed" in out.stdout


def test_grade_command_rejects_an_unknown_lesson():
    out = run_main(grade_cmd.main, "--lesson", "lesson99", "--solutions")
    assert out.returncode == 2 and "unknown lesson" in out.stderr
