"""A private newsdesk for the benchmark: its own Redis, the seeds, and API and worker processes."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

import httpx

from newsdesk.bench.processes import Child, wait_until
from newsdesk.embedded import EmbeddedRedis, free_port
from newsdesk.seeds import add_seeds
from newsdesk.settings import Settings
from newsdesk.store import Seed, Store
from workers.celery_app import QueueLayout, create_celery

KEY_PREFIX = "bench"
# High enough that the benchmark's single client never meets it, so the limiter still runs (and costs what
# it costs) on every request.
RATE_LIMIT = "1000000/minute"
HEARTBEAT_WAIT_S = 60.0
CONTROL_REPLY_S = 10.0


class BenchStack:
    """Redis (embedded, private: nothing else is disturbed and its memory figures are ours alone), the
    seeds, and API and worker processes that the parts start and stop."""

    def __init__(self, *, redis_url: str | None = None) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="newsdesk-bench-"))
        self._redis = None if redis_url else EmbeddedRedis(self.directory / "redis")
        self._redis_url = redis_url
        self.api: Child | None = None
        self.api_url = ""
        self.workers: list[Child] = []

    def __enter__(self) -> BenchStack:
        if self._redis is not None:
            self._redis.start()
            self._redis_url = self._redis.url
        self.settings = Settings.from_env(
            {}, redis_url=self._redis_url, key_prefix=KEY_PREFIX, rate_limit=RATE_LIMIT, max_backlog=1_000_000
        )
        self.store = Store.from_settings(self.settings)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop_workers()
        if self.api is not None:
            self.api.stop()
        if self._redis is not None:
            self._redis.stop()

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "REDIS_URL": self.settings.redis_url,
            "NEWSDESK_KEY_PREFIX": KEY_PREFIX,
            "NEWSDESK_RATE_LIMIT": RATE_LIMIT,
            "NEWSDESK_MAX_BACKLOG": str(self.settings.max_backlog),
            "PYTHONUNBUFFERED": "1",
        }

    def load_seeds(self, seeds: Sequence[tuple[str, str]]) -> float:
        """Store seeds (id, text); returns the seconds it took."""
        started = time.perf_counter()
        add_seeds(self.store, (Seed(seed_id, text) for seed_id, text in seeds))
        return time.perf_counter() - started

    def start_api(self, threads: int = 4) -> str:
        """One gunicorn worker process (one core's worth of Python) as `newsdesk api` runs it."""
        port = free_port()
        self.api = Child.start(
            "api",
            ["api", "--port", str(port), "--workers", "1", "--threads", str(threads)],
            self.env,
            self.directory,
        )
        self.api_url = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{self.api_url}/healthz").status_code == 200, 30, "the API", [self.api])
        return self.api_url

    def start_workers(self, count: int) -> list[Child]:
        """`count` `newsdesk worker --concurrency 1` processes, as `--scale worker=N` would run them."""
        started = [
            Child.start(
                f"worker-{len(self.workers) + i}",
                ["worker", "--concurrency", "1", "--name", f"bench-{len(self.workers) + i}@%h"],
                self.env,
                self.directory,
            )
            for i in range(count)
        ]
        self.workers += started
        wait_until(
            lambda: len(self.store.live_workers(15)) >= len(self.workers),
            HEARTBEAT_WAIT_S,
            "worker heartbeats",
            started,
        )
        return started

    @property
    def redis_pid(self) -> int | None:
        """The embedded Redis server's process (None with an outside Redis)."""
        process = self._redis.process if self._redis is not None else None
        return process.pid if process is not None else None

    @contextlib.contextmanager
    def workers_held(self) -> Iterator[None]:
        """The running workers take no message from any queue (the layout's, whatever tasks they carry)
        until the block ends; messages sent meanwhile wait in Redis. Celery remote control: each worker stops
        consuming (`cancel_consumer`) and then resumes (`add_consumer`), and every one must confirm both.
        """
        control = create_celery(self.settings).control
        queues = QueueLayout.from_settings(self.settings).queues
        try:
            for queue in queues:
                self._confirmed(control.cancel_consumer(queue, **self._reply_options()), "cancel", queue)
            yield
        finally:
            for queue in queues:
                self._confirmed(control.add_consumer(queue, **self._reply_options()), "add", queue)
            control.app.close()

    def _reply_options(self) -> dict[str, object]:
        return {"reply": True, "limit": len(self.workers), "timeout": CONTROL_REPLY_S}

    def _confirmed(self, replies: list[dict[str, dict[str, str]]] | None, action: str, queue: str) -> None:
        answers = {name: answer for reply in replies or [] for name, answer in reply.items()}
        refused = {name: answer for name, answer in answers.items() if "ok" not in answer}
        if len(answers) < len(self.workers) or refused:
            raise RuntimeError(
                f"{action}_consumer {queue!r}: {len(answers)} of {len(self.workers)} workers answered "
                f"{answers} within {CONTROL_REPLY_S} s"
            )

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers = []

    def clear_articles(self) -> None:
        """Forget every article and queued task (the seeds stay), so each measurement starts empty."""
        client = self.store.redis
        for pattern in (f"{KEY_PREFIX}:article:*", f"{KEY_PREFIX}:idempotency:*"):
            batch = list(client.scan_iter(match=pattern, count=1000))
            for start in range(0, len(batch), 1000):
                client.delete(*batch[start : start + 1000])
        # The queues themselves, not kombu's bindings (a producer declares those once and remembers).
        queues = [f"{KEY_PREFIX}:celery:{queue}" for queue in QueueLayout.from_settings(self.settings).queues]
        client.delete(f"{KEY_PREFIX}:articles", f"{KEY_PREFIX}:pending", *queues)
