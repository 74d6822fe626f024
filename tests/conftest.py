"""Fixtures with real parts: a Redis server, worker and API processes.

Redis: REDIS_URL when it answers, otherwise a private embedded server for the session. Every session
uses its own key prefix (queues included), so a shared Redis is never disturbed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis

from newsdesk.embedded import EmbeddedRedis, free_port
from newsdesk.settings import Settings
from newsdesk.store import Store

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5).ping())
    except (redis.RedisError, ValueError):
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("REDIS_URL")
    if configured and _answers(configured):
        yield configured
        return
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture(scope="session")
def key_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def service_env(redis_url: str, key_prefix: str) -> dict[str, str]:
    """The environment every service process of this session runs with."""
    return {
        **os.environ,
        "REDIS_URL": redis_url,
        "NEWSDESK_KEY_PREFIX": key_prefix,
        "NEWSDESK_LOG_LEVEL": "INFO",
        # Tests submit far faster than the default per-client limit; the limit has tests of its own.
        "NEWSDESK_RATE_LIMIT": "off",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture(scope="session")
def live_settings(redis_url: str, key_prefix: str) -> Settings:
    return Settings.from_env({}, redis_url=redis_url, key_prefix=key_prefix, rate_limit="off")


@pytest.fixture(scope="session")
def live_store(live_settings: Settings) -> Iterator[Store]:
    store = Store.from_settings(live_settings)
    yield store
    for key in store.redis.scan_iter(match=f"{live_settings.key_prefix}:*", count=1000):
        store.redis.delete(key)


@dataclass
class ServiceProcess:
    """A `newsdesk ...` child process with its output in a log file."""

    name: str
    arguments: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None)

    def start(self) -> ServiceProcess:
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "newsdesk", *self.arguments],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=ROOT,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        if not self.alive():
            return
        assert self.process is not None
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]


def wait_for(
    condition: Callable[[], object], timeout: float, what: str, process: ServiceProcess | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if condition():
                return
        if process is not None and not process.alive():
            pytest.fail(f"{process.name} exited while waiting for {what}:\n{process.log()}")
        time.sleep(0.1)
    pytest.fail(
        f"timed out after {timeout} s waiting for {what}" + (f":\n{process.log()}" if process else "")
    )


@pytest.fixture(scope="session")
def start_worker(
    service_env: dict[str, str], live_store: Store, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., ServiceProcess]]:
    """Start `newsdesk worker` processes; each is waited for (its heartbeat) and stopped at the end."""
    started: list[ServiceProcess] = []
    logs = tmp_path_factory.mktemp("worker-logs")

    def start(concurrency: int = 2, env: dict[str, str] | None = None) -> ServiceProcess:
        name = f"worker-{uuid.uuid4().hex[:6]}"
        full_env = {**service_env, **(env or {})}
        worker = ServiceProcess(
            name,
            ["worker", "--concurrency", str(concurrency), "--name", f"{name}@test"],
            full_env,
            logs / f"{name}.log",
        ).start()
        started.append(worker)
        store = Store.from_settings(Settings.from_env(full_env))
        wait_for(lambda: f"{name}@test" in store.live_workers(15), 60, f"{name} heartbeat", worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="session")
def start_api(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., tuple[ServiceProcess, str]]]:
    """Start `newsdesk api` (gunicorn) processes; returns the process and its base URL."""
    started: list[ServiceProcess] = []
    logs = tmp_path_factory.mktemp("api-logs")

    def start(env: dict[str, str] | None = None) -> tuple[ServiceProcess, str]:
        port = free_port()
        api = ServiceProcess(
            f"api-{port}",
            ["api", "--port", str(port), "--workers", "2"],
            {**service_env, **(env or {})},
            logs / f"api-{port}.log",
        ).start()
        started.append(api)
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(f"{url}/healthz", timeout=1).status_code == 200, 30, "the API", api)
        return api, url

    yield start
    for api in started:
        api.stop()
