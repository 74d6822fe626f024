"""The service's processes as the benchmark runs them, and what /proc says about them (no psutil needed)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Child:
    """A `newsdesk ...` child process (its own process group) writing its output to a log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(cls, name: str, arguments: list[str], env: dict[str, str], log_dir: Path) -> Child:
        log_path = log_dir / f"{name}.log"
        with log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(
                [sys.executable, "-m", "newsdesk", *arguments],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return cls(name, process, log_path)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def tree(self) -> list[int]:
        """This process and its descendants (gunicorn's and Celery's pool processes)."""
        return [self.pid, *descendants(self.pid)]

    def stop(self, timeout: float = 30.0) -> None:
        if not self.alive():
            return
        self.process.send_signal(signal.SIGTERM)  # a Celery worker finishes its running task first
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.process.wait()

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


def descendants(pid: int) -> list[int]:
    """Every descendant of a process, from /proc/<pid>/task/<tid>/children."""
    found: list[int] = []
    pending = [pid]
    while pending:
        current = pending.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                children = [int(child) for child in (task / "children").read_text().split()]
                found += children
                pending += children
    return found


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set size (VmHWM) in MiB, or None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time consumed so far by the given processes (those still running)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime
    return total


def wait_until(
    condition: Callable[[], object],
    timeout: float,
    what: str,
    watch: list[Child] | None = None,
) -> None:
    """Poll `condition()` until true; fail with the logs of any watched child that died meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if condition():
                return
        for child in watch or []:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited while waiting for {what}:\n{child.log_tail()}")
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, all) CPU seconds of every core since boot, from /proc/stat: over an interval, the share of the
    cores that something (these processes or anyone else's on a shared machine) kept busy."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    busy = user + nice + system + irq + softirq + steal
    return busy / _CLOCK_TICKS, (busy + idle + iowait) / _CLOCK_TICKS
