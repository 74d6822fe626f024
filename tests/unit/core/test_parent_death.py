"""newsdesk.parent_death with real processes: what it starts gets SIGTERM when its parent is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from newsdesk import parent_death
from newsdesk.parent_death import PARENT_GONE, dies_with_parent

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_child_gets_sigterm_when_its_parent_is_killed(tmp_path: Path) -> None:
    child_pid, got = tmp_path / "child.pid", tmp_path / "got"
    # The child notes its pid, then waits; on SIGTERM (and only on SIGTERM) it writes `got` and exits.
    child = f"trap 'echo TERM > {got}; exit 0' TERM; echo $$ > {child_pid}; while :; do sleep 0.05; done"
    # The parent starts it (in a session of its own, out of reach of its group), then dies by SIGKILL.
    parent = (
        "import os, signal, subprocess, time\n"
        "from newsdesk.parent_death import dies_with_parent\n"
        f"subprocess.Popen(dies_with_parent(['/bin/sh', '-c', {child!r}]), start_new_session=True)\n"
        "deadline = time.monotonic() + 10\n"
        f"while not os.path.exists({str(child_pid)!r}) and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    pid = None
    try:
        killed = subprocess.run([sys.executable, "-c", parent], check=False, timeout=30)
        assert killed.returncode == -signal.SIGKILL
        pid = int(child_pid.read_text())
        deadline = time.monotonic() + 5
        while running(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not running(pid)
        assert got.read_text().strip() == "TERM"
    finally:
        if pid is not None and running(pid):
            os.kill(pid, signal.SIGKILL)


def test_the_launcher_leaves_no_trace_in_what_it_starts(tmp_path: Path) -> None:
    readable, writable = os.pipe()
    try:
        report = (
            "echo pid=$$; echo ppid=$PPID; echo variable=$NEWSDESK_PARENT_DEATH_TEST; "
            "grep -E '^(SigIgn|SigBlk):' /proc/self/status; "
            f"echo inherited > /proc/self/fd/{writable}"
        )
        process = subprocess.Popen(
            dies_with_parent(["/bin/sh", "-c", report]),
            stdout=subprocess.PIPE,
            env={**os.environ, "NEWSDESK_PARENT_DEATH_TEST": "passed on"},
            pass_fds=(writable,),
        )
        assert process.stdout is not None
        output, _ = process.communicate(timeout=30)
        assert process.returncode == 0
        lines = output.decode().splitlines()
        assert f"pid={process.pid}" in lines  # the launcher became the command: the pid is the command's
        assert f"ppid={os.getpid()}" in lines
        assert "variable=passed on" in lines
        assert "SigIgn:\t0000000000000000" in lines  # no SIGPIPE ignored by the launcher's interpreter
        assert "SigBlk:\t0000000000000000" in lines
        os.close(writable)
        writable = -1
        assert os.read(readable, 100) == b"inherited\n"
    finally:
        os.close(readable)
        if writable != -1:
            os.close(writable)


def test_a_child_whose_parent_died_before_the_signal_was_armed_is_not_started(tmp_path: Path) -> None:
    started = tmp_path / "started"
    not_the_parent = os.getppid()  # as if we had died and it had adopted the launcher
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            parent_death.__file__,
            str(not_the_parent),
            str(int(signal.SIGTERM)),
            "--",
            "/bin/touch",
            str(started),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == PARENT_GONE
    assert f"/bin/touch: not started: its parent (pid {not_the_parent}) has exited" in result.stderr
    assert not started.exists()


def test_only_the_main_thread_may_start_such_a_child() -> None:
    # The signal comes when the thread that forked the child ends, not the process.
    errors: list[BaseException] = []

    def start() -> None:
        try:
            dies_with_parent(["/bin/true"])
        except RuntimeError as error:
            errors.append(error)

    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    assert [str(error) for error in errors] == [
        "a child that dies with its parent must be started from the main thread"
    ]
