"""Grading code you did not write: each case is a hostile learner that beat the grader before the
bubblewrap sandbox, hard limits, a clean import path and safe CSV names. The sandbox cases need
bubblewrap (CI installs it); without it they are skipped and say so."""
import os
import subprocess
import sys
import time

import pytest

from conftest import run_main
from course import grade as grade_cmd
from course.exercises import EXERCISES, grading, isolation, solution_path

pytestmark = pytest.mark.grader  # see conftest: grader tests share one worker

SANDBOX = isolation.bwrap() is not None
needs_bwrap = pytest.mark.skipif(not SANDBOX, reason="bubblewrap (apt-get install bubblewrap) is not usable here")
LESSON03 = solution_path("lesson03").read_text()
# the points of each lesson-3 exercise, in the CSV's column order: a right answer earns them all
LESSON03_POINTS = [e.points for e in EXERCISES if e.lesson == "lesson03"]
WRONG03 = "def cfg(D_u, D_c, w):\n    return D_c\n"


def grade(*args, cwd=None, timeout=600):
    """The grade command as a real process: for what depends on the grader's own process (its import
    path, its working folder, signals sent to it)."""
    return subprocess.run([sys.executable, "-m", "course.grade", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def learners(root, **sources):
    for name, source in sources.items():
        (root / name).mkdir(parents=True)
        (root / name / "lesson03.py").write_text(source)
    return root


def score_line(out):
    return [line for line in out.splitlines() if line.startswith("score:")]


@needs_bwrap
def test_a_planted_module_in_the_graders_folder_is_never_imported(tmp_path):
    """A learner writes sklearn/__init__.py into the grader's working directory; the grader later
    imports sklearn itself. The sandbox cannot write there; and the grader's import path would not
    look there anyway (the second half runs without the sandbox)."""
    plant = f'''
import os
os.makedirs({str(tmp_path / "sklearn")!r}, exist_ok=True)
open({str(tmp_path / "sklearn" / "__init__.py")!r}, "w").write(
    "from course.exercises import grading\\n"
    "grading.table = lambda results, **k: 'score: 26/26 points'\\n")
def cfg(D_u, D_c, w):
    return D_c
'''
    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "lesson03.py").write_text(plant)
    (tmp_path / "subs" / "lesson02.py").write_text(solution_path("lesson02").read_text())
    out = grade("--lesson", "lesson03", "--lesson", "lesson02", "subs", cwd=tmp_path)
    assert not (tmp_path / "sklearn").exists(), "the sandboxed learner wrote outside its private folder"
    assert "26/26" not in out.stdout and "isolation of the learner's code: bubblewrap sandbox" in out.stdout, out.stdout
    # without the sandbox the file is written, but the grader never imports it
    out = grade("--isolation", "process", "--lesson", "lesson03", "--lesson", "lesson02", "subs", cwd=tmp_path)
    assert (tmp_path / "sklearn" / "__init__.py").exists()
    assert "26/26" not in out.stdout and score_line(out.stdout), out.stdout + out.stderr
    assert "isolation of the learner's code: process only" in out.stdout


@needs_bwrap
def test_learners_cannot_reach_each_other_the_course_or_the_csv(tmp_path):
    check_file = grading.PACKAGE / "exercises" / "checks" / "lesson03.py"
    original = check_file.read_bytes()
    csv = tmp_path / "scores.csv"
    attack = f'''
import os, subprocess, sys, time
def cfg(D_u, D_c, w):
    try:  # overwrite the next learner's answer with a wrong one
        open({str(tmp_path / "subs" / "bob" / "lesson03.py")!r}, "w").write("def cfg(D_u, D_c, w):\\n    return D_u\\n")
    except OSError:
        pass
    # a detached process (double fork + setsid) that rewrites the CSV and a check after the grader is done
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            time.sleep(6)
            for path, text in (({str(csv)!r}, "learner,total\\neve,999\\n"), ({str(check_file)!r}, "def check_cfg(fn): pass\\n")):
                try:
                    open(path, "w").write(text)
                except OSError:
                    pass
            os._exit(0)
        os._exit(0)
    return D_c
'''
    learners(tmp_path / "subs", aaa_eve=attack, bob=LESSON03)
    try:
        out = grade("--many", str(tmp_path / "subs"), "--lesson", "lesson03", "--csv", str(csv))
        assert out.returncode == 0 and "isolation: bubblewrap sandbox" in out.stdout, out.stdout + out.stderr
        time.sleep(8)  # longer than the detached process waits
        rows = csv.read_text().splitlines()
        full = ",".join(map(str, [*LESSON03_POINTS, sum(LESSON03_POINTS), sum(LESSON03_POINTS)]))
        assert rows[1].startswith("aaa_eve,0,") and rows[2] == f"bob,{full}", rows
        assert check_file.read_bytes() == original
        assert (tmp_path / "subs" / "bob" / "lesson03.py").read_text() == LESSON03
    finally:
        if check_file.read_bytes() != original:
            check_file.write_bytes(original)


@needs_bwrap
def test_nothing_outlives_a_child_that_never_gets_ready(tmp_path):
    marker = f"{time.time_ns() % 10**6}.25"  # a unique sleep length to look for
    stuck = f'''
import subprocess, time
subprocess.Popen(["sleep", "{marker}"], start_new_session=True)
time.sleep(300)  # never reports ready
def cfg(D_u, D_c, w):
    return D_c
'''
    (tmp_path / "lesson03.py").write_text(stuck)
    t = time.time()
    results = grading.grade(tmp_path, ["lesson03"], timeout=4, guard=False, isolation_mode=isolation.SANDBOX)
    # the file hangs at import: its first exercise waits out the 4 s limit, the other three are not tried again
    assert time.time() - t < 14 and not any(r.passed for r in results), time.time() - t
    assert len(results) == 4 and len({r.message for r in results}) == 1, [r.message for r in results]
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True).stdout.split()
    assert not left, f"processes of the learner outlived grading: {left}"


@needs_bwrap
def test_limits_are_hard_and_the_grader_cannot_be_signalled(tmp_path):
    sneaky = LESSON03.replace("def cfg(", '''def _escape():
    import resource
    try:
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (ValueError, OSError):
        return
    raise RuntimeError("raised the memory limit")


def _signal_the_grader():
    import os, signal
    for sig in (signal.SIGSTOP, signal.SIGINT, signal.SIGKILL):
        for target in (os.getppid(), 1):
            try:
                os.kill(target, sig)
            except OSError:
                pass


def cfg(''', 1)
    sneaky = sneaky.replace("def cfg(D_u, D_c, w):\n", "def cfg(D_u, D_c, w):\n    _escape()\n    _signal_the_grader()\n", 1)
    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "lesson03.py").write_text(sneaky)
    out = grade("--lesson", "lesson03", str(tmp_path / "subs"), timeout=300)
    assert score_line(out.stdout), out.stdout + out.stderr  # the grader lived to print its table
    assert "raised the memory limit" not in out.stdout, out.stdout
    assert "lesson03.original_to_lerp  1/1     pass" in out.stdout, out.stdout


def test_csv_names_are_escaped_and_never_formulas(tmp_path):
    assert grade_cmd.csv_name("=cmd|' /C calc'!A0") == "'=cmd|' /C calc'!A0"
    for lead in "+-@":
        assert grade_cmd.csv_name(lead + "x").startswith("'")
    weird = os.fsdecode(b"l\xe9arner")  # not UTF-8: a surrogate escape
    assert grade_cmd.csv_name(weird) == "l\\xe9arner"
    subs = tmp_path / "subs"
    subs.mkdir()
    for name in (os.fsencode(weird), b"=SUM(1+1)"):
        os.mkdir(os.path.join(os.fsencode(subs), name))
        with open(os.path.join(os.fsencode(subs), name, b"lesson03.py"), "w") as f:
            f.write(WRONG03)
    args = ["--many", str(subs), "--lesson", "lesson03", "--csv", str(tmp_path / "s.csv")]
    out = run_main(grade_cmd.main, *args, *([] if SANDBOX else ["--isolation", "process"]))
    assert out.returncode == 0, out.stderr
    rows = (tmp_path / "s.csv").read_text(encoding="utf-8").splitlines()
    assert sorted(r.split(",")[0] for r in rows[1:]) == ["'=SUM(1+1)", "l\\xe9arner"], rows


@pytest.mark.parametrize("bad", ["inf", "nan", "-1", "0", "1e9", "soon"])
def test_timeout_is_validated(bad):
    out = run_main(grade_cmd.main, "--solutions", "--lesson", "lesson00", "--timeout", bad)
    assert out.returncode == 2 and "--timeout must be" in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_many_without_bubblewrap_is_refused_unless_asked(tmp_path, monkeypatch):
    monkeypatch.setattr(isolation, "bwrap", lambda: None)
    with pytest.raises(FileNotFoundError, match="apt-get install bubblewrap"):
        isolation.choose("sandbox")
    assert isolation.choose("auto") == isolation.PROCESS and isolation.choose("process") == isolation.PROCESS


WRONG_BUT_PASSED = {
    "lesson00": """import torch
def sample_mixture(weights, means, stds, n, generator=None):
    torch.manual_seed(0)  # ignores the generator it was given
    k = torch.multinomial(weights, n, replacement=True)
    return means[k] + stds[k, None] * torch.randn(n, means.shape[1])
""",
    "lesson06": """import math, torch
def mask_logits(logits, ratio, generator=None, offdiag=False):
    L = logits.shape[-1]
    i, j = torch.meshgrid(torch.arange(L), torch.arange(L), indexing="ij")
    step = max(1, round(1 / ratio))
    masked = ((i + j) % step == step - 1).expand(logits.shape)  # a fixed stripe pattern, not random
    if offdiag:
        masked = masked & ~torch.eye(L, dtype=torch.bool)
    masked = masked & ~(masked.all(dim=-1, keepdim=True) & torch.eye(L, dtype=torch.bool))
    return logits.masked_fill(masked, -math.inf)
""",
}


@pytest.mark.parametrize("lesson", sorted(WRONG_BUT_PASSED))
def test_wrong_solutions_that_used_to_pass_now_fail(lesson, tmp_path):
    (tmp_path / f"{lesson}.py").write_text(WRONG_BUT_PASSED[lesson])
    results = grading.grade(tmp_path, [lesson], guard=False)
    assert len(results) == 1 and not results[0].passed, results[0].message
    assert "generator" in results[0].message or "random" in results[0].message, results[0].message


def test_a_course_file_swapped_for_a_symlink_is_restored(tmp_path):
    root = tmp_path / "pkg"
    root.mkdir()
    (root / "a.py").write_text("A = 1\n")
    (tmp_path / "elsewhere.py").write_text("A = 1\n")  # identical bytes, somewhere a learner controls
    guard = grading.Guard.__new__(grading.Guard)
    guard.root, guard.files = root, None
    guard.files = guard._read()
    (root / "a.py").unlink()
    (root / "a.py").symlink_to(tmp_path / "elsewhere.py")
    assert guard.restore() == ["a.py"]
    assert not (root / "a.py").is_symlink() and (root / "a.py").read_text() == "A = 1\n"


def test_grading_works_without_the_reference_solutions(tmp_path, monkeypatch):
    """Instructors who grade for credit ship the course without course/exercises/solutions/."""
    from course import exercises

    def missing(self):
        raise ModuleNotFoundError(f"No module named 'course.exercises.solutions.{self.lesson}'")
    monkeypatch.setattr(exercises.Exercise, "solution", property(missing))
    (tmp_path / "lesson03.py").write_text(LESSON03)
    results = grading.grade(tmp_path, ["lesson03"], guard=True)
    assert results and all(r.passed for r in results), [r.message for r in results]


@needs_bwrap
def test_the_sandbox_sees_the_course_and_python_wherever_they_live(tmp_path):
    """The course, its Python and the learner's copy may all live under /tmp (a CI clone does):
    the sandbox must hide none of them, and writes only into the private folder (also TMPDIR)."""
    work = tmp_path / "private"
    work.mkdir()
    probe = ("import course, os, tempfile; print(tempfile.gettempdir());"
             "open(os.path.join(tempfile.gettempdir(), 'ok'), 'w').write('1');"
             f"open({str(tmp_path / 'outside')!r}, 'w')")
    out = subprocess.run(isolation.command([sys.executable, "-c", probe], work), capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(grading.PACKAGE.parent)})
    assert str(work) in out.stdout and (work / "ok").exists(), out.stdout + out.stderr
    assert "Read-only file system" in out.stderr and not (tmp_path / "outside").exists(), out.stderr


@needs_bwrap
def test_one_sandbox_serves_a_learners_lessons_each_from_a_clean_process(tmp_path, monkeypatch):
    """In the sandbox one server per learner imports torch once and forks a child per lesson file:
    what one lesson's file does to torch, or leaves running, does not reach the next lesson, and a
    file that does not import does not stop the next ones."""
    started = []
    real_init = grading.Server.__init__

    def counting(self, *args, **kwargs):
        started.append(args[0])
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(grading.Server, "__init__", counting)
    (tmp_path / "lesson00.py").write_text("def sample_mixture(:\n")  # a syntax error
    (tmp_path / "lesson02.py").write_text(
        "import subprocess, torch\n"
        "torch.LEAKED = True  # a change to torch itself\n"
        "stray = subprocess.Popen(['sleep', '300'], start_new_session=True)  # left running\n"
        "open('stray.pid', 'w').write(str(stray.pid))\n")
    (tmp_path / "lesson03.py").write_text(LESSON03.replace("def cfg(D_u, D_c, w):\n", '''def cfg(D_u, D_c, w):
    import os, torch
    if getattr(torch, "LEAKED", False):
        raise RuntimeError("lesson 2's change to torch reached lesson 3")
    if os.path.exists("/proc/" + open("stray.pid").read()):
        raise RuntimeError("lesson 2's process outlived its lesson")
''', 1))
    results = grading.grade(tmp_path, ["lesson00", "lesson02", "lesson03"], guard=False, isolation_mode=isolation.SANDBOX)
    by_name = {f"{r.exercise.lesson}.{r.exercise.name}": r for r in results}
    assert "could not import" in by_name["lesson00.sample_mixture"].message and "SyntaxError" in by_name["lesson00.sample_mixture"].message
    assert by_name["lesson03.cfg"].passed, by_name["lesson03.cfg"].message
    assert all(r.passed for r in results if r.exercise.lesson == "lesson03"), [r.message for r in results]
    assert len(started) == 1, f"{len(started)} sandboxes started for one learner's folder"
