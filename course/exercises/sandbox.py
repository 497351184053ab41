"""The process that runs a learner's function for the grader (``python -m course.exercises.sandbox``).

It sets its own limits (CPU time, memory, size of files written) before it imports the learner's
file, then answers the grader's calls over its standard input and output, one JSON line each way
(see :mod:`course.exercises.wire`): it receives arguments, calls the learner's function and sends
back the result as plain data. It never judges anything: the grader compares the results with the
reference in its own process, so nothing this process sends can mark an exercise passed.

One process serves the exercises of one lesson file (``NAMES``, comma-separated): importing
torch and the learner's file once per lesson rather than once per exercise.

In the grader's bubblewrap sandbox it runs as a server instead (``--serve MEMORY FSIZE``): it
imports torch once, then for each lesson file the grader opens ({"open": {"path", "lesson",
"names", "cpu"}}) it forks a child that sets that lesson's limits, imports the learner's file and
serves it as above until the grader sends {"close": true}. Each lesson file so starts from the
same clean process (nothing one file does to torch or to Python reaches the next), without
importing torch again. When the child has ended, the server kills every other process left in
the sandbox's PID namespace (what the learner's code started) and sends {"ended": exit status}.

Messages to the grader: {"ready": true} or {"fatal": text} once, then for each call
{"name": function, "call": arguments} one of {"result": value}, {"raised": type, "message": text},
{"missing": text} (the file defines no such function), or {"callback": id, "args": value} when the
learner's code calls a function the grader passed (the grader answers {"return": value} or
{"callback_raised": text}).
"""
import errno
import os
import signal
import sys
import time
import traceback
from pathlib import Path


def address_space():
    """Bytes of address space this process maps now (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def set_limits(cpu_seconds=None, memory_bytes=None, file_bytes=None, core_dumps=True):
    """Hard rlimits for this process and its children (POSIX; elsewhere only the grader's wall-clock
    limit applies): once set, the learner's code can lower them but never raise them.
    ``memory_bytes`` is added to the address space already mapped (torch's libraries, which are
    large in CUDA builds), so the budget is what the learner's code may allocate."""
    try:
        import resource
    except ImportError:  # Windows
        return
    address = None if memory_bytes is None else address_space() + memory_bytes
    for name, value in (("RLIMIT_CPU", cpu_seconds), ("RLIMIT_AS", address), ("RLIMIT_FSIZE", file_bytes),
                        ("RLIMIT_CORE", None if core_dumps else 0)):
        limit = getattr(resource, name, None)
        if limit is None or value is None:
            continue
        try:
            hard = resource.getrlimit(limit)[1]
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            # hard limits, so that the learner's code cannot raise them again; the CPU's hard limit
            # one second above the soft one, so that SIGXCPU (a clear message) comes before SIGKILL
            ceiling = value + 1 if name == "RLIMIT_CPU" and (hard == resource.RLIM_INFINITY or value + 1 <= hard) else value
            resource.setrlimit(limit, (value, ceiling))
        except (ValueError, OSError):
            pass  # not settable here (e.g. RLIMIT_AS on macOS): the wall-clock limit still applies


def where_in(tb, path):
    """' (at FILE, line N: code)' for the innermost frame of the learner's file, if any."""
    frames = [f for f in traceback.extract_tb(tb) if Path(f.filename).resolve() == Path(path).resolve()]
    return f" (at {Path(path).name}, line {frames[-1].lineno}: {frames[-1].line})" if frames else ""


def stop_strays():
    """Kill every other process of this PID namespace - what the learner's code left running - and
    reap them (orphans are this init's children). Only ever called as the PID namespace's first
    process inside the grader's sandbox (see :func:`main`)."""
    for _ in range(100):  # a stray may fork while it is being killed: look again until none is left
        strays = [int(e) for e in os.listdir("/proc") if e.isdigit() and int(e) != 1]
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        if not strays:
            return
        time.sleep(0.01)


def main(argv):
    serving = argv[:1] == ["--serve"]
    if serving:
        _, memory, fsize = argv
    else:
        path, lesson, names, cpu, memory, fsize = argv
    # The channel: private copies of stdin/stdout. The learner's print() goes to stderr (a capped
    # file the grader owns) and input() reads nothing, so neither can disturb the messages.
    channel_in = os.fdopen(os.dup(0), "rb")
    channel_out = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)
    set_limits(cpu_seconds=None if serving else int(cpu), file_bytes=int(fsize), core_dumps=False)

    import torch

    if not serving:
        set_limits(memory_bytes=int(memory))  # after torch's libraries are mapped: the budget is the learner's

    from . import load_file
    from .wire import WireError, decode, dumps, encode, loads

    torch.set_num_threads(1)

    def send(message):
        channel_out.write(dumps(message))
        channel_out.flush()

    def receive():
        line = channel_in.readline()
        if not line:
            raise SystemExit(0)  # the grader closed the channel
        return loads(line)

    def make_callable(ident):
        def call_back(*args, **kwargs):
            send({"callback": ident, "args": encode([list(args), kwargs])})
            reply = receive()
            if "callback_raised" in reply:
                raise RuntimeError(f"the grader's function raised: {reply['callback_raised']}")
            return decode(reply.get("return"))
        return call_back

    def serve(path, lesson, names):
        """Import the learner's file and answer the grader's calls until it closes the lesson."""
        try:
            module = load_file(path, lesson)
        except BaseException as err:  # a syntax error, an import error, anything at import time
            send({"fatal": f"could not import {path}: {type(err).__name__}: {err}"})
            return
        names = set(names.split(","))
        send({"ready": True})
        while True:
            message = receive()
            if message.get("close") is True:  # loads() gives only JSON objects
                return
            try:
                name = message["name"]
                args, kwargs = decode(message["call"], make_callable)
            except (KeyError, TypeError, ValueError, WireError) as err:
                send({"fatal": f"the grader sent a malformed call ({err})"})
                return
            fn = getattr(module, name, None) if name in names else None
            if not callable(fn):
                send({"missing": f"{Path(path).name} defines no function named {name}"})
                continue
            try:
                result = fn(*args, **kwargs)
            except NotImplementedError as err:
                send({"raised": "NotImplementedError", "message": str(err)})
            except OSError as err:
                why = (f"your code wrote more than the output-size limit ({int(fsize) >> 20} MiB)"
                       if err.errno == errno.EFBIG else str(err))
                send({"raised": type(err).__name__, "message": f"{why}{where_in(err.__traceback__, path)}"})
            except BaseException as err:  # noqa: BLE001 - report everything the learner's code raises
                send({"raised": type(err).__name__, "message": f"{err}{where_in(err.__traceback__, path)}"})
            else:
                send({"result": encode(result)})

    if not serving:
        serve(path, lesson, names)
        return
    if os.getpid() != 1:
        send({"fatal": "--serve runs only as the first process of the grader's bubblewrap sandbox (bwrap --as-pid-1)"})
        return
    # As the namespace's init this process gets only the signals it handles: none, so Python's
    # SIGINT handler goes (the children get it back).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    send({"ready": True})
    while True:
        message = receive()  # the grader closing the channel ends the server (SystemExit)
        try:
            opened = message["open"]
            path, lesson, names, cpu = str(opened["path"]), str(opened["lesson"]), str(opened["names"]), int(opened["cpu"])
        except (KeyError, TypeError, ValueError) as err:
            send({"fatal": f"the grader sent a malformed request ({err})"})
            return
        pid = os.fork()
        if pid == 0:  # the lesson's own process: its limits, then the learner's file
            code = 0
            try:
                signal.signal(signal.SIGINT, signal.default_int_handler)
                set_limits(cpu_seconds=cpu, memory_bytes=int(memory))
                serve(path, lesson, names)
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else 0
            except BaseException:  # noqa: BLE001 - e.g. the channel broke: the grader sees the exit status
                code = 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)  # (orphans reaped meanwhile are not waited for here: only this child)
        stop_strays()
        send({"ended": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    main(sys.argv[1:])
