"""How the grader isolates a learner's code: a bubblewrap sandbox where it can, a plain child
process otherwise.

bubblewrap (``bwrap``; Debian/Ubuntu package ``bubblewrap``, https://github.com/containers/bubblewrap)
is the maintained tool that Flatpak uses to sandbox applications. Each learner's files are graded
inside one (the grader's server, :mod:`course.exercises.sandbox`, forks a child per lesson file):

* a new PID namespace, whose first process (the server) dies with the grader
  (``--die-with-parent``) and cannot be signalled from inside: every process the learner's code
  starts - forked, double-forked, ``setsid``-ed - is killed when its lesson ends, and the grader's
  own process is not visible to it (no signals to the grader, no ``/proc/<pid>/fd``);
* no network (a new network namespace, with only its own loopback), a new session (no terminal);
* the whole file system read-only (the course, the system, every other learner's files) and one
  writable folder: a private copy of this learner's files, thrown away after the learner's
  grading (also its HOME and TMPDIR);
* the hard rlimits the child sets before it imports the learner's file (CPU time, memory, size of
  files written), which the learner's code cannot raise again.

What it does not protect: the learner's code can *read* what the grader's account can read -
including the course's reference solutions, which ship in the package by design (to grade the
exercises for credit, give learners a package without ``course/exercises/solutions``; README,
"Grading many learners"). And the verdict never comes from the child anyway: it is reached in the
grader's process from plain data (see :mod:`course.exercises.grading`).

Without bubblewrap (macOS, Windows, a Linux without it or without user namespaces) the child is a
plain process in its own process group with the same rlimits where the OS has them: good enough
for a learner grading their own work, not for code you did not write. The score table says which
isolation was used.
"""
import functools
import shutil
import subprocess
from pathlib import Path

SANDBOX, PROCESS = "bubblewrap sandbox", "process only"


@functools.lru_cache(maxsize=None)
def bwrap():
    """The path of a ``bwrap`` that can build a sandbox here (checked once by running one), else None."""
    path = shutil.which("bwrap")
    if path is None:
        return None
    try:
        probe = subprocess.run([path, *_namespace_args(), "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "true"],
                               capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return path if probe.returncode == 0 else None


def _namespace_args():
    return ["--unshare-all", "--die-with-parent", "--new-session"]


def choose(isolation="auto"):
    """The isolation to use: "sandbox" (bubblewrap, an error if it cannot run here), "process", or
    "auto" (the sandbox where bubblewrap works, else process isolation). Returns SANDBOX or PROCESS."""
    if isolation not in ("auto", "sandbox", "process"):
        raise ValueError(f"unknown isolation {isolation!r}; choose auto, sandbox or process")
    if isolation == "process":
        return PROCESS
    if bwrap() is not None:
        return SANDBOX
    if isolation == "sandbox":
        raise FileNotFoundError("bubblewrap (bwrap) is not installed, or cannot create namespaces on this machine: "
                                "install it (Debian/Ubuntu: sudo apt-get install bubblewrap) to grade code you did not "
                                "write, or pass --isolation process to grade with process isolation only")
    return PROCESS


def private_copy(folder, into, max_bytes=16 * 2**20):
    """Copy the regular files directly in ``folder`` (a learner's lessonNN.py and helpers) into the
    folder ``into``; symbolic links and subfolders are not followed. Returns ``into``."""
    into = Path(into)
    total = 0
    for p in sorted(Path(folder).iterdir()):
        if p.is_symlink() or not p.is_file():
            continue
        total += p.stat().st_size
        if total > max_bytes:
            raise ValueError(f"{folder} holds more than {max_bytes >> 20} MiB of files; a learner's folder holds lessonNN.py files")
        shutil.copyfile(p, into / p.name)
    return into


def command(cmd, workdir, as_pid_1=False):
    """``cmd`` wrapped in a bubblewrap sandbox whose only writable folder is ``workdir`` (also its
    working directory and HOME). ``as_pid_1``: ``cmd`` is the PID namespace's first process (the
    grader's server, :mod:`course.exercises.sandbox`): the kernel ignores signals sent to it from
    inside the namespace (it installs no handlers), so the learner's code cannot stop or kill it."""
    workdir = str(Path(workdir).resolve())
    # No tmpfs over /tmp: the course or its Python may live there (a CI clone); temporary files go
    # to the private folder instead (TMPDIR).
    return [bwrap(), *_namespace_args(),
            "--ro-bind", "/", "/",              # everything read-only: the course, the system, other learners
            "--dev", "/dev", "--proc", "/proc",  # a minimal /dev; the new PID namespace's own /proc
            "--bind", workdir, workdir,          # the learner's private copy: the one writable folder
            "--chdir", workdir, "--setenv", "HOME", workdir, "--setenv", "TMPDIR", workdir,
            *(["--as-pid-1"] if as_pid_1 else []),
            "--", *cmd]
