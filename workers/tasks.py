"""Celery tasks: thin adapters that take an article id and hand it to the pipeline.

Run a worker with `newsdesk worker` (or `celery -A workers.tasks worker`).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from typing import Any

import redis
from celery import Task
from celery.signals import setup_logging, worker_ready, worker_shutdown

from newsdesk import logs
from newsdesk.settings import Settings
from newsdesk.store import Store
from workers.celery_app import create_celery, enqueue_analysis
from workers.pipeline import Analyzers, run_analysis
from workers.sweeper import Sweeper

log = logging.getLogger(__name__)

settings = Settings.from_env()
app = create_celery(settings)

HEARTBEAT_SECONDS = 5.0


class _Runtime:
    """Per-process store and analyzers, made on first use so each forked pool process has its own."""

    def __init__(self) -> None:
        self._store: Store | None = None
        self._analyzers: Analyzers | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store.from_settings(settings)
        return self._store

    @property
    def analyzers(self) -> Analyzers:
        if self._analyzers is None:
            self._analyzers = Analyzers(settings, self.store)
        return self._analyzers


runtime = _Runtime()


class AnalysisTask(Task):  # type: ignore[misc]
    """Shared settings of the analysis tasks: retry while Redis is unreachable, with backoff."""

    autoretry_for = (redis.ConnectionError, redis.TimeoutError)
    retry_backoff = 1
    retry_backoff_max = 30
    retry_jitter = True
    max_retries = 20


def _analyse(task: Task, article_id: str, name: str) -> None:
    with logs.bound(task_id=task.request.id, article_id=article_id, analysis=name):
        run_analysis(runtime.store, runtime.analyzers, article_id, name, max_attempts=settings.max_attempts)


@app.task(name="analysis.summary", base=AnalysisTask, bind=True)
def summary_task(self: Task, article_id: str) -> None:
    _analyse(self, article_id, "summary")


@app.task(name="analysis.stance", base=AnalysisTask, bind=True)
def stance_task(self: Task, article_id: str) -> None:
    _analyse(self, article_id, "stance")


@app.task(name="analysis.duplicates", base=AnalysisTask, bind=True)
def duplicates_task(self: Task, article_id: str) -> None:
    _analyse(self, article_id, "duplicates")


@setup_logging.connect
def _configure_logging(**_: Any) -> None:
    """Our one-line format instead of Celery's."""
    logs.configure(settings.log_level, settings.log_format)


# Background duties of the main worker process: a heartbeat every few seconds (/readyz counts the live
# workers) and the sweeper loop.
_stop_background = threading.Event()


def _worker_name(sender: Any) -> str:
    return str(getattr(sender, "hostname", None) or socket.gethostname())


@worker_ready.connect
def _start_background(sender: Any = None, **_: Any) -> None:
    name = _worker_name(sender)
    store = Store.from_settings(settings)

    def beat() -> None:
        while not _stop_background.is_set():
            try:
                store.worker_heartbeat(name)
            except redis.RedisError:
                log.warning("heartbeat failed", extra={"worker": name})
            _stop_background.wait(HEARTBEAT_SECONDS)

    sweeper = Sweeper(
        store, lambda analysis, article_id: enqueue_analysis(app, analysis, article_id), settings
    )
    threading.Thread(target=beat, name="heartbeat", daemon=True).start()
    threading.Thread(
        target=sweeper.run_forever, args=(_stop_background,), name="sweeper", daemon=True
    ).start()
    log.info("worker ready", extra={"worker": name})


@worker_shutdown.connect
def _stop(sender: Any = None, **_: Any) -> None:
    _stop_background.set()
    with contextlib.suppress(redis.RedisError):
        Store.from_settings(settings).worker_gone(_worker_name(sender))
