"""Child processes that get a signal when the process that started them dies, even by SIGKILL (Linux).

`newsdesk run` starts Redis, the API and a worker in sessions of their own (so that a terminal's Ctrl-C
reaches it alone and it stops them in order). Killed with SIGKILL, it can stop nothing, and they would
run on, holding its data folder. The kernel's parent-death signal, prctl(PR_SET_PDEATHSIG), is the
well-understood remedy: armed in the child, it is sent by the kernel itself when the parent goes, however
it goes, and it survives exec (for all but set-user-ID programs).

It has to be armed in the child between fork and exec. subprocess's preexec_fn would run Python there,
which is unsafe in a process with threads (`newsdesk run` has some: numpy's BLAS pool, at least), since a
lock another thread held at the fork stays held in the child for ever. So the child execs this file
first, in a fresh interpreter (-I -S: the standard library only, no site-packages, no sitecustomize),
which arms the signal, checks that the parent is still there, and execs the real command in its place:
the same pid, environment and inherited descriptors. This costs one small interpreter start (~20 ms).

Two properties of the signal the callers must respect:
- It is sent when the *thread* that forked the child exits, not the whole process, so children must be
  started from a thread that lives as long as the process: `dies_with_parent` accepts the main thread
  only (which in CPython outlives every other thread of the process).
- A parent that dies before the signal is armed sends nothing; the launcher then sees a parent pid that
  is no longer the one it was started by, and starts nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# Exit status of a launcher whose parent died before the signal was armed.
PARENT_GONE = 3


def dies_with_parent(command: Sequence[str], signum: signal.Signals = signal.SIGTERM) -> list[str]:
    """`command` (its program an absolute path) run so that it gets `signum` when this process dies.

    Elsewhere than on Linux, `command` unchanged: there is no parent-death signal to arm.
    """
    if not sys.platform.startswith("linux"):
        return list(command)
    if threading.current_thread() is not threading.main_thread():
        # The signal would come when this thread ends, stopping the child while the process lives on.
        raise RuntimeError("a child that dies with its parent must be started from the main thread")
    return [sys.executable, "-I", "-S", __file__, str(os.getpid()), str(int(signum)), "--", *command]


def _arm_and_exec(arguments: list[str]) -> NoReturn:
    parent, signum, separator, *command = arguments
    if separator != "--" or not command:
        sys.exit(f"usage: {sys.argv[0]} PARENT_PID SIGNAL -- PROGRAM [ARGUMENT ...]")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(int(signum)), 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"prctl(PR_SET_PDEATHSIG): {os.strerror(error)}")
    if os.getppid() != int(parent):
        # Our parent died before the signal was armed, so it will never come: a child started now would
        # outlive it, unsupervised. (A reaper adopted us; its pid is not the one we were given.)
        print(f"{command[0]}: not started: its parent (pid {parent}) has exited", file=sys.stderr)
        os._exit(PARENT_GONE)
    # This interpreter ignores SIGPIPE and SIGXFSZ, and an ignored signal stays ignored across exec;
    # give the command the default dispositions, as subprocess's restore_signals does.
    for name in ("SIGPIPE", "SIGXFSZ"):
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    os.execv(command[0], command)  # noqa: S606 - the caller's argv, as subprocess would run it


if __name__ == "__main__":
    _arm_and_exec(sys.argv[1:])
