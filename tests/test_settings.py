"""The course's switches: COURSE_THREADS sets torch's thread count in every process that imports
the course, and a bad value is a clear error."""
import os
import subprocess
import sys


def run(value):
    env = {**os.environ, "COURSE_THREADS": value}
    return subprocess.run([sys.executable, "-c", "import course, torch; print(torch.get_num_threads())"],
                          env=env, capture_output=True, text=True, timeout=120)


def test_course_threads_sets_torch_threads_and_rejects_nonsense():
    assert run("1").stdout.strip() == "1"
    bad = run("many")
    assert bad.returncode != 0 and "COURSE_THREADS must be a whole number >= 1; got 'many'" in bad.stderr
