"""newsdesk.parent_death with real processes: what it starts gets SIGTERM when its parent is killed
(at once, or, under a keeper, once the clients holding its lifeline have gone)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from newsdesk import parent_death
from newsdesk.parent_death import PARENT_GONE, dies_with_parent, stops_after_clients

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


def test_the_launcher_leaves_no_trace_in_what_it_starts() -> None:
    def report(through_the_launcher: bool) -> tuple[int, list[str], bytes]:
        """What the command sees: pids, environment, signal dispositions, an inherited descriptor."""
        readable, writable = os.pipe()
        try:
            script = (
                "echo pid=$$; echo ppid=$PPID; echo variable=$NEWSDESK_PARENT_DEATH_TEST; "
                "grep -E '^(SigIgn|SigBlk):' /proc/self/status; "
                f"echo inherited > /proc/self/fd/{writable}"
            )
            command = ["/bin/sh", "-c", script]
            process = subprocess.Popen(
                dies_with_parent(command) if through_the_launcher else command,
                stdout=subprocess.PIPE,
                env={**os.environ, "NEWSDESK_PARENT_DEATH_TEST": "passed on"},
                pass_fds=(writable,),
            )
            output, _ = process.communicate(timeout=30)
            assert process.returncode == 0
            os.close(writable)
            writable = -1
            return process.pid, output.decode().splitlines(), os.read(readable, 100)
        finally:
            os.close(readable)
            if writable != -1:
                os.close(writable)

    pid, lines, inherited = report(through_the_launcher=True)
    assert lines[:3] == [f"pid={pid}", f"ppid={os.getpid()}", "variable=passed on"]  # the launcher became it
    assert inherited == b"inherited\n"
    # The same signal dispositions and mask as without it (its interpreter ignores SIGPIPE, not the command).
    _, plain, _ = report(through_the_launcher=False)
    assert lines[3:] == plain[3:]
    assert len(plain[3:]) == 2


def test_a_child_whose_parent_died_before_the_signal_was_armed_is_not_started(tmp_path: Path) -> None:
    started = tmp_path / "started"
    not_the_parent = os.getppid()  # as if we had died and it had adopted the launcher
    launcher = [sys.executable, "-I", "-S", parent_death.__file__]
    for mode, options in [("exec", [str(int(signal.SIGTERM))]), ("keep", ["0", "1.0", ""])]:
        result = subprocess.run(
            [*launcher, mode, str(not_the_parent), *options, "--", "/bin/touch", str(started)],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == PARENT_GONE, result.stderr
        assert f"/bin/touch: not started: its parent (pid {not_the_parent}) has exited" in result.stderr
        assert not started.exists()


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class KeptServer:
    """A parent that starts a "server" under a keeper and a "client" holding the lifeline, then dies by
    SIGKILL. The server writes `serving` once started, `got` on SIGTERM; the client exits once `release`
    exists."""

    def __init__(self, tmp_path: Path, at_most: float) -> None:
        self.got, self.release, self.pids = tmp_path / "got", tmp_path / "release", tmp_path / "pids"
        serving = tmp_path / "serving"
        server = f"trap 'echo TERM > {self.got}; exit 0' TERM; touch {serving}; while :; do sleep 0.05; done"
        client = f"while [ ! -e {self.release} ]; do sleep 0.05; done"
        self.parent = (
            "import os, signal, subprocess, time\n"
            "from newsdesk.parent_death import stops_after_clients\n"
            "lifeline, held = os.pipe()\n"
            f"server = ['/bin/sh', '-c', {server!r}]\n"
            f"server = stops_after_clients(server, lifeline=lifeline, at_most={at_most})\n"
            "keeper = subprocess.Popen(server, pass_fds=(lifeline,), start_new_session=True)\n"
            f"client = ['/bin/sh', '-c', {client!r}]\n"
            "client = subprocess.Popen(client, pass_fds=(held,), start_new_session=True)\n"
            "deadline = time.monotonic() + 10\n"
            f"while not os.path.exists({str(serving)!r}) and time.monotonic() < deadline:\n"
            "    time.sleep(0.01)\n"
            f"open({str(self.pids)!r}, 'w').write(f'{{keeper.pid}} {{client.pid}}')\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n"
        )
        self.keeper = self.client = 0

    def start_and_kill_the_parent(self) -> None:
        killed = subprocess.run([sys.executable, "-c", self.parent], check=False, timeout=30)
        assert killed.returncode == -signal.SIGKILL
        self.keeper, self.client = map(int, self.pids.read_text().split())

    def clean_up(self) -> None:
        self.release.touch()
        for pid in (self.keeper, self.client):
            if pid and running(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)


def test_a_kept_server_outlives_its_dead_parent_until_its_clients_have_gone(tmp_path: Path) -> None:
    kept = KeptServer(tmp_path, at_most=30)
    try:
        kept.start_and_kill_the_parent()
        time.sleep(0.5)
        assert running(kept.keeper)
        assert not kept.got.exists()  # the client still holds the lifeline: the server serves on
        kept.release.touch()  # the client exits, and with it the last holder of the lifeline's write end
        assert wait_until(lambda: not running(kept.client), 5)
        assert wait_until(lambda: not running(kept.keeper), 5)
        assert kept.got.read_text().strip() == "TERM"
    finally:
        kept.clean_up()


def test_a_kept_server_is_stopped_after_at_most_seconds_whatever_its_clients_do(tmp_path: Path) -> None:
    kept = KeptServer(tmp_path, at_most=1)
    try:
        kept.start_and_kill_the_parent()
        assert wait_until(lambda: not running(kept.keeper), 5)
        assert running(kept.client)
        assert kept.got.read_text().strip() == "TERM"
    finally:
        kept.clean_up()


def test_a_keeper_stops_its_server_on_sigterm_and_exits_with_its_status(tmp_path: Path) -> None:
    lifeline, held = os.pipe()
    try:
        serving = tmp_path / "serving"
        server = f"trap 'exit 7' TERM; touch {serving}; while :; do sleep 0.05; done"
        command = stops_after_clients(["/bin/sh", "-c", server], lifeline=lifeline, at_most=30)
        keeper = subprocess.Popen(command, pass_fds=(lifeline,))
        assert wait_until(serving.exists, 10)
        keeper.terminate()  # while the lifeline is held (by us): SIGTERM means now
        assert keeper.wait(5) == 7
        # A server that exits by itself: the keeper exits with it, with its status.
        keeper = subprocess.Popen(
            stops_after_clients(["/bin/sh", "-c", "exit 5"], lifeline=lifeline, at_most=30),
            pass_fds=(lifeline,),
        )
        assert keeper.wait(5) == 5
    finally:
        os.close(lifeline)
        os.close(held)


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
