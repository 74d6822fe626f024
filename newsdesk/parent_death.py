"""Child processes that stop when the process that started them dies, even by SIGKILL (Linux).

`newsdesk run` starts Redis, the API and a worker in sessions of their own (so that a terminal's Ctrl-C
reaches it alone and it stops them in order). Killed with SIGKILL, it can stop nothing, and they would
run on, holding its data folder. The kernel's parent-death signal, prctl(PR_SET_PDEATHSIG), is the
well-understood remedy: armed in the child, it is sent by the kernel itself when the parent goes, however
it goes, and it survives exec (for all but set-user-ID programs).

It has to be armed in the child between fork and exec. subprocess's preexec_fn would run Python there,
which is unsafe in a process with threads (`newsdesk run` has some: numpy's BLAS pool, at least), since a
lock another thread held at the fork stays held in the child for ever. So the child runs this file
first, in a fresh interpreter (-I -S: the standard library only, no site-packages, no sitecustomize),
which arms the signal, checks that the parent is still there, and then either

- execs the command in its place (dies_with_parent): the same pid, environment and inherited
  descriptors; the command itself gets the signal. This costs one small interpreter start (~20 ms).
- or stays, as a keeper, the command's parent (stops_after_clients), for a server that must outlive its
  clients: Redis, into which a worker stopping on the same signal still saves its running analyses. Its
  clients hold the write end of a pipe, the lifeline, whose read end the keeper has; once the parent has
  died, the keeper reads the lifeline until end-of-file, which comes when the last process holding the
  write end has exited, and only then gives the command SIGTERM.

Two properties of the signal the callers must respect:
- It is sent when the *thread* that forked the child exits, not the whole process, so children must be
  started from a thread that lives as long as the process: only the main thread is accepted (in CPython
  it outlives every other thread of the process).
- A parent that dies before the signal is armed sends nothing; the launcher then sees a parent pid that
  is no longer the one it was started by, and starts nothing.
- A parent with threads may send it more than once as it dies: the kernel sends it each time the child
  is handed on from an exiting thread, to another of the parent's threads first. A second SIGTERM is
  harmless to Redis, gunicorn's graceful stop and Celery's warm shutdown (a second SIGINT would not be:
  Celery takes it for a cold shutdown), and the keeper only notes it.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import NoReturn

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# Exit status of a launcher whose parent died before the signal was armed.
PARENT_GONE = 3
# The keeper's own parent-death signal: "wait for the clients, then stop the command". SIGTERM keeps its
# usual sense for it, "stop the command now": the parent's orderly stop, once it has stopped the clients.
KEEPER_PARENT_DEATH = signal.SIGUSR1


def dies_with_parent(command: Sequence[str], signum: signal.Signals = signal.SIGTERM) -> list[str]:
    """`command` (its program an absolute path) run so that it gets `signum` when this process dies.

    Elsewhere than on Linux, `command` unchanged: there is no parent-death signal to arm.
    """
    if not _parent_death_signal_available():
        return list(command)
    return _launcher("exec", [str(int(signum))], command)


def stops_after_clients(
    command: Sequence[str], *, lifeline: int, at_most: float, pass_fds: Sequence[int] = ()
) -> list[str]:
    """`command` (its program an absolute path) run under a keeper that gives it SIGTERM when the keeper
    gets SIGTERM, and, when this process dies, once no process holds the write end of the pipe whose read
    end is `lifeline` any more (or `at_most` seconds after the death). The keeper is given `lifeline`
    (pass it in the keeper's pass_fds); the command, `pass_fds` (which the keeper must be given too).

    Elsewhere than on Linux, `command` unchanged.
    """
    if not _parent_death_signal_available():
        return list(command)
    hand_down = ",".join(str(fd) for fd in pass_fds)
    return _launcher("keep", [str(lifeline), repr(float(at_most)), hand_down], command)


def _parent_death_signal_available() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    if threading.current_thread() is not threading.main_thread():
        # The signal would come when this thread ends, stopping the child while the process lives on.
        raise RuntimeError("a child that dies with its parent must be started from the main thread")
    return True


def _launcher(mode: str, options: list[str], command: Sequence[str]) -> list[str]:
    return [sys.executable, "-I", "-S", __file__, mode, str(os.getpid()), *options, "--", *command]


def _arm(signum: int, parent: int, program: str) -> None:
    """Have the kernel send `signum` when `parent` dies; exit at once, starting nothing, if it has."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signum), 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"prctl(PR_SET_PDEATHSIG): {os.strerror(error)}")
    if os.getppid() != parent:
        # Our parent died before the signal was armed, so it will never come: a command started now would
        # outlive it, unsupervised. (A reaper adopted us; its pid is not the one we were given.)
        print(f"{program}: not started: its parent (pid {parent}) has exited", file=sys.stderr)
        os._exit(PARENT_GONE)


def _exec(command: list[str]) -> NoReturn:
    # This interpreter ignores SIGPIPE and SIGXFSZ, and an ignored signal stays ignored across exec;
    # give the command the default dispositions, as subprocess's restore_signals does.
    for name in ("SIGPIPE", "SIGXFSZ"):
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    os.execv(command[0], command)  # noqa: S606 - the caller's argv, as subprocess would run it


def _keep(
    parent: int, lifeline: int, at_most: float, hand_down: tuple[int, ...], command: list[str]
) -> NoReturn:
    """Run `command` until told to stop (SIGTERM) or, after the parent's death, until the lifeline
    closes or `at_most` s pass; then SIGTERM it and exit with its status."""
    stop_now = parent_gone = False

    def on_stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stop_now
        stop_now = True

    def on_parent_death(_signum: int, _frame: FrameType | None) -> None:
        nonlocal parent_gone
        parent_gone = True

    # Each signal also wakes the select below (the wake-up pipe): an exit of the command (SIGCHLD), a
    # stop, the parent's death, without polling.
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_stop)
    signal.signal(KEEPER_PARENT_DEATH, on_parent_death)
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
    _arm(KEEPER_PARENT_DEATH, parent, command[0])
    # The command stops too if the keeper is killed (SIGKILL: no time to wait for anything).
    server = subprocess.Popen(dies_with_parent(command, signal.SIGTERM), pass_fds=hand_down)
    deadline: float | None = None
    while server.poll() is None and not stop_now:
        if parent_gone and deadline is None:
            deadline = time.monotonic() + at_most
        watched = [wake_read, lifeline] if parent_gone else [wake_read]
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select(watched, [], [], timeout)
        if wake_read in ready:
            os.read(wake_read, 512)
        if lifeline in ready and not os.read(lifeline, 512):
            break  # end-of-file: every process that held the write end has exited
        if deadline is not None and time.monotonic() >= deadline:
            break
    if server.poll() is None:
        server.terminate()
        server.wait()
    status = server.returncode
    os._exit(status if status >= 0 else 128 - status)  # as a shell reports a death by signal


def _main(arguments: list[str]) -> NoReturn:
    separator = arguments.index("--") if "--" in arguments else -1
    options, command = arguments[:separator], arguments[separator + 1 :]
    if separator < 0 or not command or options[:1] not in (["exec"], ["keep"]):
        sys.exit(
            f"usage: {sys.argv[0]} exec PARENT_PID SIGNAL -- PROGRAM [ARGUMENT ...]\n"
            f"       {sys.argv[0]} keep PARENT_PID LIFELINE_FD AT_MOST_S [FD,...] -- PROGRAM [ARGUMENT ...]"
        )
    if options[0] == "exec":
        _, parent, signum = options
        _arm(int(signum), int(parent), command[0])
        _exec(command)
    _, parent, lifeline, at_most, hand_down = options
    fds = tuple(int(fd) for fd in hand_down.split(",") if fd)
    _keep(int(parent), int(lifeline), float(at_most), fds, command)


if __name__ == "__main__":
    _main(sys.argv[1:])
