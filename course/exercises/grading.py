"""Grade learners' files: each exercise's check runs here, the learner's code in another process.

What the grader guarantees:

* The verdict is reached in the grader's own process. The learner's function runs in a child
  process (:mod:`course.exercises.sandbox`) that receives the check's inputs and sends back its
  outputs as plain data (:mod:`course.exercises.wire`, JSON; nothing is unpickled); the check
  compares them with the reference here. Learner code cannot send "passed", and a malformed or
  forged message fails that exercise only.
* Limits: a wall-clock limit per exercise (``timeout``); on Linux and other POSIX systems also CPU
  time, memory (address space) and the size of any file written, including printed output (see
  :func:`limits`). One child serves the exercises of one lesson file
  (torch and the file are imported once); after the lesson's last exercise, and after any
  exercise that timed out or broke the child, its whole process group is killed, so processes it
  spawned die with it. In the sandbox the children are forked from one :class:`Server` per
  learner's folder, which imports torch once; a lesson's child still starts clean, and what it
  started is killed when it ends. On Windows only the wall-clock limit applies.
* The course's own files (checks, reference solutions, every module of the package) are read
  into memory before any learner code runs; after each exercise they are compared with that copy
  and restored if the learner's code changed, added or removed any of them, and that exercise
  fails. So one learner's code cannot change the next learner's score.

* Isolation (:mod:`course.exercises.isolation`): where bubblewrap works (Linux), each learner's
  children run in a sandbox - its own PID namespace (nothing a lesson starts outlives that lesson,
  and it cannot see or signal the grader), no network, the file system read-only except a private copy of the
  learner's files. Elsewhere, process isolation only: the learner's code runs with your account's
  permissions and a process that leaves its session can outlive the kill - fine for grading your
  own work, not code you did not write. :func:`grade` returns which was used.
* The grader's own imports never come from a folder a learner can write (``course.grade`` drops
  the working directory from its import path).
"""
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import EXERCISES, isolation
from .wire import WireError, decode, dumps, encode, loads

PACKAGE = Path(__file__).resolve().parents[1]  # the installed course/ package
MAX_MESSAGE = 256 * 2**20  # bytes in one message from the child


def limits(timeout, exercises=1):
    """(CPU seconds, memory bytes, file-size bytes) for a child that serves ``exercises`` exercises:
    CPU time a little above the sum of their wall-clock limits (importing torch takes a few
    seconds), 4 GiB of address space beyond what torch itself maps, 16 MiB of output."""
    return int(timeout) * exercises + 30, 4 * 2**30, 16 * 2**20


@dataclass
class Result:
    exercise: object
    passed: bool
    message: str


class LearnerRaised(Exception):
    """The learner's function raised (in the child); the message names the type and the line."""


class ChildFailed(Exception):
    """The child process died, timed out or broke the protocol."""


class Missing(Exception):
    """The learner's file defines no function of the exercise's name (the child lives on)."""


_SIGNALS = {"SIGXCPU": "the CPU-time limit", "SIGKILL": "a kill (memory?)", "SIGXFSZ": "the output-size limit (16 MiB)",
            "SIGSEGV": "a crash in native code", "SIGABRT": "an abort"}


def _ended(code):
    """What the exit status ``code`` of a check's process (negative: a signal) says to a learner."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the check's process was stopped by {name} ({_SIGNALS.get(name, 'a signal')})"
    return f"the check's process ended early (exit status {code}): did your code call exit()?"


def _environment():
    """The child's environment: the course importable, one thread, no bytecode written."""
    python_path = os.pathsep.join(filter(None, [str(PACKAGE.parent), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": python_path}


class Channel:
    """A process the grader speaks to in JSON lines (:mod:`course.exercises.wire`) over its stdin
    and stdout, in its own process group; its stderr (the learner's prints) goes to a file here.
    ``workdir``: a temporary folder removed with the process."""

    def __init__(self, cmd, cwd, workdir=None):
        self.output = tempfile.TemporaryFile()
        self.workdir, self.buffer, self.selector = workdir, b"", None
        kwargs = dict(start_new_session=True) if os.name == "posix" else dict(creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0))
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.output,
                                     cwd=str(cwd), env=_environment(), **kwargs)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.proc.stdout, selectors.EVENT_READ)

    def read(self, deadline, timeout, died):
        """The next message, before ``deadline`` (time.monotonic()); ``died()`` says why the
        channel closed early."""
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not self.selector.select(left):
                raise ChildFailed(f"no answer within {timeout:g} s: an infinite loop, or far too slow?")
            chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
            if not chunk:
                raise ChildFailed(died())
            self.buffer += chunk
            if len(self.buffer) > MAX_MESSAGE:
                raise ChildFailed(f"your code sent more than {MAX_MESSAGE >> 20} MiB in one answer")
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            return loads(line)
        except WireError as err:
            raise ChildFailed(f"the exercise's process sent a malformed message ({err}); did your code write to "
                              "the grader's channel?") from None

    def send(self, message, died):
        try:
            self.proc.stdin.write(dumps(message))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise ChildFailed(died()) from None

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        """Kill the process's whole group (in a sandbox: its PID namespace dies with it) and clean up."""
        try:
            if os.name == "posix":
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.kill()
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        self.selector.close()
        for stream in (self.proc.stdin, self.proc.stdout, self.output):
            try:
                stream.close()
            except OSError:
                pass
        if self.workdir is not None:
            self.workdir.cleanup()
            self.workdir = None


def _private_copy(folder):
    """(a temporary folder, the copy of the learner's ``folder`` in it): the sandbox's only writable
    place. The temporary folder is removed again if the copy fails."""
    workdir = tempfile.TemporaryDirectory(prefix="course-grade-")
    try:
        return workdir, isolation.private_copy(folder, workdir.name)
    except BaseException:
        workdir.cleanup()
        raise


def _start(cmd, cwd, workdir, timeout):
    """A :class:`Channel` to ``cmd`` once it has said {"ready": true} within ``timeout`` seconds;
    else it is killed and :class:`ChildFailed` says why."""
    channel = None
    try:
        channel = Channel(cmd, cwd, workdir)
        first = channel.read(time.monotonic() + timeout, timeout, lambda: _ended(channel.proc.wait(timeout=5)))
        if "fatal" in first:
            raise ChildFailed(str(first["fatal"]))
        if first.get("ready") is not True:
            raise ChildFailed("the exercise's process did not start properly")
        return channel
    except BaseException:
        if channel is not None:
            channel.kill()  # a child that never became ready (slept at import, blocked on a FIFO) dies here
        elif workdir is not None:
            workdir.cleanup()
        raise


class Server:
    """One bubblewrap sandbox serving every lesson file in ``folder`` (``python -m
    course.exercises.sandbox --serve``): torch imported once, a fresh child forked for each lesson
    file (see :class:`Child`). Its private copy of the folder is made once."""

    def __init__(self, folder, timeout):
        workdir, self.folder = _private_copy(folder)
        _, memory, fsize = limits(timeout)
        cmd = isolation.command([sys.executable, "-m", "course.exercises.sandbox", "--serve", str(memory), str(fsize)],
                                self.folder, as_pid_1=True)
        self.channel = _start(cmd, self.folder, workdir, timeout)

    def alive(self):
        return self.channel is not None and self.channel.alive()

    def kill(self):
        """End the sandbox and everything in it."""
        if self.channel is not None:
            self.channel.kill()
            self.channel = None


class Child:
    """A learner's lesson file in its own process, serving the functions ``names`` (a name or a
    list): a process of its own, or (``server``) one forked by the sandbox's :class:`Server`.
    ``begin(name)`` starts an exercise (its function, and a fresh wall-clock deadline);
    ``call(*args, **kwargs)`` runs that function there; ``close(broken)`` ends it."""

    def __init__(self, path, lesson, names, timeout, mode=isolation.PROCESS, server=None):
        names = [names] if isinstance(names, str) else list(names)
        cpu, memory, fsize = limits(timeout, len(names))
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.name = names[0]
        self.server = server
        if server is None:
            path, workdir = Path(path).resolve(), None
            cwd = path.parent
            if mode == isolation.SANDBOX:  # the learner's files, copied into a private folder: its only writable place
                workdir, cwd = _private_copy(path.parent)
                path = cwd / path.name
            cmd = [sys.executable, "-m", "course.exercises.sandbox", str(path), lesson, ",".join(names), str(cpu), str(memory), str(fsize)]
            if mode == isolation.SANDBOX:
                cmd = isolation.command(cmd, cwd)
            self.channel = _start(cmd, cwd, workdir, timeout)
            return
        # a child forked by the sandbox's server, from its copy of the folder
        self.channel = server.channel
        try:
            self.send({"open": {"path": str(server.folder / Path(path).name), "lesson": lesson, "names": ",".join(names), "cpu": cpu}})
            first = self.read()
            if "fatal" in first:  # the file did not import: the server lives on for the next lesson
                self._wait_ended()
                self.channel = self.server = None
                raise ChildFailed(str(first["fatal"]))
            if "ended" in first:
                raise ChildFailed(_ended(int(first["ended"])))
            if first.get("ready") is not True:
                raise ChildFailed("the exercise's process did not start properly")
        except BaseException:
            if self.server is not None:
                self.close(broken=True)
            raise

    def _wait_ended(self):
        """Read the server's {"ended": status} after this lesson's child has gone (a few seconds at most)."""
        self.deadline = time.monotonic() + 10
        message = self.read()
        if message.get("ended") != 0 or self.channel.buffer:
            raise ChildFailed("the exercise's process did not end cleanly")

    def begin(self, name):
        """Start the exercise whose function is ``name``: its own wall-clock limit from now."""
        self.name = name
        self.deadline = time.monotonic() + self.timeout

    def _died(self):
        if self.server is not None:  # the server's channel closed: its end says nothing about the lesson
            return "the check's process ended early"
        return _ended(self.channel.proc.wait(timeout=5))

    def read(self):
        """The next message, within the deadline."""
        return self.channel.read(self.deadline, self.timeout, self._died)

    def send(self, message):
        self.channel.send(message, self._died)

    def call(self, *args, **kwargs):
        """Run the learner's function on these arguments in the child; return its result (decoded here)."""
        callables = []
        self.send({"name": self.name, "call": encode([list(args), kwargs], callables)})
        while True:
            message = self.read()
            try:
                if "result" in message:
                    return decode(message["result"])
                if "raised" in message:
                    kind, text = str(message["raised"]), str(message.get("message", ""))
                    if kind == "NotImplementedError":
                        raise NotImplementedError(text)
                    raise LearnerRaised(f"your code raised {kind}: {text}")
                if "callback" in message:
                    fn = callables[message["callback"]]
                    cargs, ckwargs = decode(message["args"])
                    try:
                        value = fn(*cargs, **ckwargs)
                    except Exception as err:  # the check's own helper failed on what the learner passed it
                        self.send({"callback_raised": f"{type(err).__name__}: {err}"})
                        continue
                    self.send({"return": encode(value)})
                    continue
                if "missing" in message:
                    raise Missing(str(message["missing"]))
                if "fatal" in message:
                    raise ChildFailed(str(message["fatal"]))
                if "ended" in message:  # from the server: the lesson's child died during the call
                    raise ChildFailed(_ended(int(message["ended"])))
            except (WireError, KeyError, IndexError, TypeError, ValueError) as err:
                raise ChildFailed(f"the exercise's process sent a malformed message ({type(err).__name__}: {err})") from None
            raise ChildFailed("the exercise's process sent a message the grader does not know")

    def close(self, broken=False):
        """End the child. Its own process is killed with its whole group (what it spawned dies with
        it). A server's child is asked to end after a clean lesson and the server kept; a broken one
        (timed out, died, sent garbage) takes the whole sandbox with it."""
        if self.channel is None:
            return
        if self.server is None:
            self.channel.kill()
        else:
            if not broken:
                try:
                    self.send({"close": True})
                    self._wait_ended()
                except ChildFailed:
                    broken = True
            if broken:
                self.server.kill()
        self.channel = self.server = None


class Guard:
    """The course package's files as read before any learner code ran; :meth:`restore` puts back
    any that changed, appeared or vanished, and names the source files among them.

    Bytecode caches (__pycache__) are restored or removed too, silently: Python may write them
    legitimately, and a planted one is as harmless once removed."""

    def __init__(self, root=PACKAGE):
        self.root = root
        for ex in EXERCISES:  # import every check (and what it imports) from the pristine files
            ex.check
            try:
                ex.solution
            except ModuleNotFoundError:
                pass  # a course shipped without its reference solutions: the checks do not need them
        sys.dont_write_bytecode = True  # from here on, any new cache file is not ours
        self.files = self._read()

    def _read(self):
        return {p: p.read_bytes() for p in self.root.rglob("*") if p.is_file() and not p.is_symlink()}

    def restore(self):
        now = {p for p in self.root.rglob("*") if p.is_file() or p.is_symlink()}
        touched = []
        for p in now - set(self.files):
            p.unlink()
            touched.append(p)
        for p, data in self.files.items():
            if p.is_symlink():  # a file swapped for a link, even to identical bytes, is a change
                p.unlink()
            if p not in now or p.is_symlink() or not p.exists() or p.read_bytes() != data:
                p.parent.mkdir(parents=True, exist_ok=True)
                tmp = p.with_name(f".{p.name}.restore")
                tmp.write_bytes(data)
                tmp.replace(p)
                touched.append(p)
        return [str(p.relative_to(self.root)) for p in touched if "__pycache__" not in p.parts]


def check_timeout(timeout):
    """``timeout`` as float seconds in (0, 3600], or a ValueError that says so."""
    try:
        value = float(timeout)
    except (TypeError, ValueError):
        raise ValueError(f"--timeout must be a number of seconds; got {timeout!r}") from None
    if not (0 < value <= 3600):  # also false for NaN
        raise ValueError(f"--timeout must be a number of seconds in (0, 3600]; got {timeout!r}")
    return value


def grade_lesson(exercises, path, timeout=60.0, guard=None, mode=isolation.PROCESS, servers=None):
    """Grade ``exercises`` (all of one lesson) with the learner's file at ``path``: each check runs
    here, the functions in one child process, started again after an exercise that broke it.
    ``servers``: a dict folder -> :class:`Server` that :func:`grade` keeps across lessons (in the
    sandbox only), to fork the children from. Returns a list of :class:`Result`, one per exercise."""
    timeout = check_timeout(timeout)

    def start():
        if servers is None or mode != isolation.SANDBOX:
            return Child(path, exercises[0].lesson, [e.name for e in exercises], timeout, mode)
        folder = Path(path).resolve().parent
        if folder not in servers or not servers[folder].alive():
            servers[folder] = Server(folder, timeout)
        return Child(path, exercises[0].lesson, [e.name for e in exercises], timeout, mode, server=servers[folder])

    results, child, unloadable = [], None, None
    try:
        for exercise in exercises:
            try:
                if child is None:
                    if unloadable is not None:  # the file did not load (or hung loading): it would not now either
                        raise ChildFailed(unloadable)
                    try:
                        child = start()
                    except ChildFailed as err:
                        unloadable = str(err)
                        raise
                child.begin(exercise.name)
                exercise.check(child.call)
                passed, message = True, ""
            except NotImplementedError as err:
                passed, message = False, f"not written yet (it raises NotImplementedError: {err})"
            except AssertionError as err:
                passed, message = False, str(err) or "a check failed"
            except (LearnerRaised, Missing) as err:
                passed, message = False, str(err)
            except ChildFailed as err:  # dead, too slow or broken: the next exercise gets a fresh child
                passed, message = False, str(err)
                if child is not None:
                    child.close(broken=True)
                    child = None
            except Exception as err:  # the check itself failed on what the learner returned (e.g. a wrong type)
                passed, message = False, f"your function's result could not be checked: {type(err).__name__}: {err}"
            if guard is not None:
                touched = guard.restore()
                if touched:
                    passed = False
                    message = (f"your code changed the course's own files ({', '.join(touched[:5])}); they were restored. "
                               + message).strip()
            results.append(Result(exercise, passed, message))
    finally:
        if child is not None:
            child.close()
    return results


def grade_one(exercise, path, timeout=60.0, guard=None, mode=isolation.PROCESS) -> Result:
    """Grade one exercise of the learner's file at ``path``: the check runs here, the function there."""
    return grade_lesson([exercise], path, timeout, guard, mode)[0]


def grade(folder=None, lessons=None, timeout=60.0, paths=None, guard=True, isolation_mode=isolation.PROCESS):
    """Grade every exercise (or those of ``lessons``) with the files ``folder/lessonNN.py``
    (or an explicit ``paths`` dict lesson -> file). Returns a list of :class:`Result`.

    ``guard=True`` (the command line's setting) restores the course's files after each exercise
    (:class:`Guard`). It restores *any* change made while an exercise runs, so do not edit the
    course package while grading runs; the test suite passes ``guard=False`` except where it
    tests the guard itself. ``isolation_mode``: :data:`isolation.SANDBOX` or
    :data:`isolation.PROCESS` (see :func:`course.exercises.isolation.choose`)."""
    timeout = check_timeout(timeout)
    guard = Guard() if guard else None
    results, servers = [], {}
    chosen = [ex for ex in EXERCISES if not lessons or ex.lesson in lessons]
    try:
        for lesson in dict.fromkeys(ex.lesson for ex in chosen):  # lesson order, each once
            mine = [ex for ex in chosen if ex.lesson == lesson]
            path = Path(paths[lesson]) if paths else Path(folder) / f"{lesson}.py"
            if not path.exists():
                results += [Result(ex, False, f"{path} does not exist (open lesson {lesson[-2:]} once to create it)") for ex in mine]
                continue
            results += grade_lesson(mine, path, timeout, guard, isolation_mode, servers)
    finally:
        for server in servers.values():
            server.kill()
    return results


def _wrap(text, width):
    import textwrap

    out = []
    for para in text.strip().splitlines():
        out += textwrap.wrap(para, width) or [""]
    return out


def table(results, width=100, isolation_mode=None) -> str:
    """The score table: exercise, points, pass/fail, and each failure's message wrapped below its
    row (so the "expected ... got ..." part is where the learner looks); with ``isolation_mode``,
    a last line saying how the learner's code was isolated."""
    rows = [("exercise", "points", "result")]
    for r in results:
        pts = f"{r.exercise.points if r.passed else 0}/{r.exercise.points}"
        rows.append((f"{r.exercise.lesson}.{r.exercise.name}", pts, "pass" if r.passed else "FAIL"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(rows[0][i].ljust(widths[i]) for i in range(3)), "-" * (sum(widths) + 4)]
    for r, row in zip(results, rows[1:]):
        lines.append("  ".join(row[i].ljust(widths[i]) for i in range(3)).rstrip())
        if not r.passed:
            lines += ["    " + part for part in _wrap(r.message, width)]
    got = sum(r.exercise.points for r in results if r.passed)
    total = sum(r.exercise.points for r in results)
    lines.append(f"\nscore: {got}/{total} points, {sum(r.passed for r in results)}/{len(results)} exercises passed")
    if isolation_mode is not None:
        lines.append(f"isolation of the learner's code: {isolation_mode}")
    return "\n".join(lines)
