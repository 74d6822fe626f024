"""Celery tasks: thin adapters that take an article id and hand it to the pipeline.

Run a worker with `newsdesk worker` (or `celery -A workers.tasks worker`).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import redis
from celery import Task, bootsteps
from celery.exceptions import Reject, SoftTimeLimitExceeded
from celery.signals import setup_logging, worker_process_init, worker_process_shutdown
from kombu.exceptions import OperationalError

from newsdesk import logs, metrics
from newsdesk.settings import Settings
from newsdesk.store import TERMINAL, Store, write_token
from newsdesk.webhooks import backoff, deliver_article
from workers.celery_app import (
    ANALYSIS_TASK,
    RUN_ORDER,
    WEBHOOK_TASK,
    CeleryBrokerView,
    QueueLayout,
    create_celery,
    enqueue_analyses,
    enqueue_webhook,
)
from workers.pipeline import Analyzers, patiently, run_analyses
from workers.sweeper import Sweeper

log = logging.getLogger(__name__)
# Redis unreachable, through the store (redis-py) or through a send to the broker (kombu).
BROKER_OUTAGES: tuple[type[Exception], ...] = (redis.RedisError, OperationalError)

settings = Settings.from_env()
app = create_celery(settings)
layout = QueueLayout.from_settings(settings)

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


@worker_process_init.connect
def _warm_up(**_: Any) -> None:
    """Load the stance model when a pool process starts, not inside the first article's analysis."""
    try:
        runtime.analyzers.scorer  # noqa: B018 - the property loads the model
    except Exception:
        log.exception("stance model not loaded; each stance analysis will try again, and fail")


@worker_process_shutdown.connect
def _flush_metrics(**_: Any) -> None:
    """A pool process ends with os._exit, which skips atexit: write its last figures now."""
    metrics.flush_all()


@app.task(name=ANALYSIS_TASK, bind=True)
def analysis_task(self: Task, article_id: str, analyses: list[str]) -> None:
    """Run the named analyses of one article (the ones its queue carries), in order."""
    names = [name for name in analyses if name in RUN_ORDER]
    with logs.bound(task_id=self.request.id, article_id=article_id):
        try:
            outcome = run_analyses(
                runtime.store,
                runtime.analyzers,
                article_id,
                names,
                max_attempts=settings.max_attempts,
                store_patience=settings.task_time_limit / 2,
                interruptions=(SoftTimeLimitExceeded,),
            )
        except SoftTimeLimitExceeded as error:
            # The analysis that ran out of time keeps its counted attempt (NEWSDESK_MAX_ATTEMPTS ends a
            # poison article); the message goes back to its queue at once, finished analyses are kept.
            log.warning("time limit: message returned to its queue", extra={"analyses": ",".join(names)})
            raise Reject(reason="soft time limit", requeue=True) from error
        # Only a finished article with a callback has a webhook to send; when nothing ran (a redelivered
        # message), an earlier run may have died before sending it, so check.
        if outcome.status is None or (outcome.status in TERMINAL and outcome.callback_url):
            claim = write_token()  # one claim through every try: see _dispatch_webhook
            patiently(
                lambda: _dispatch_webhook(article_id, claim),
                within=settings.task_time_limit / 2,
                outages=BROKER_OUTAGES,
            )


def _dispatch_webhook(article_id: str, claim: str | None = None) -> None:
    """Send the webhook delivery of an article that has just finished (its finish marked it due).

    Every analysis task of the article checks after its run, and the one that moves the webhook from
    due to queued sends it: one delivery task per article. If the send fails, the webhook is due
    again for the next try (`patiently`, through an outage), or else for the sweeper.

    `claim` is the move's token, the same in every try: a claim applied whose reply was lost is found
    again as this task's (and sent) on the next try, instead of looking like another worker's and
    leaving the webhook queued with no delivery until the sweeper's next look.
    """
    if runtime.store.move_webhook(article_id, "due", "queued", token=claim):
        try:
            enqueue_webhook(app, article_id)
        except Exception:
            # A move of its own (its own token): once it is applied, the claim's next try claims afresh.
            runtime.store.move_webhook(article_id, "queued", "due")
            raise


@app.task(name=WEBHOOK_TASK, bind=True, max_retries=None)
def webhook_task(self: Task, article_id: str) -> None:
    """One delivery attempt. Its number is counted on the article, not taken from Celery's retries: a
    delivery the sweeper sends again is a new message, whose retries start at 0."""
    with logs.bound(task_id=self.request.id, article_id=article_id):
        # The soft time limit ends a delivery that outlives the task (its timeout is longer than the
        # task's time limit): a failed attempt, retried like the others.
        outcome = deliver_article(runtime.store, settings, article_id, interruptions=(SoftTimeLimitExceeded,))
        log.log(
            logging.WARNING if outcome.state == "unsigned" else logging.INFO,
            "webhook",
            extra={"outcome": outcome.state, "detail": outcome.detail, "webhook_attempt": outcome.attempt},
        )
        if outcome.retry or outcome.state == "unsigned":
            # The retry waits in a worker until due: keep it well inside the visibility timeout. One this
            # worker could not sign waits the longest, for a worker that can (it counts no attempt).
            cap = min(settings.webhook_backoff_max, settings.visibility_timeout / 2)
            wait = backoff(outcome.attempt, settings.webhook_backoff, cap) if outcome.retry else cap
            raise self.retry(countdown=wait)


@setup_logging.connect
def _configure_logging(**_: Any) -> None:
    """Our one-line format instead of Celery's."""
    logs.configure(settings.log_level, settings.log_format)


class WorkerDuties(bootsteps.StartStopStep):  # type: ignore[misc]
    """The worker's heartbeat (/readyz counts live workers) and the sweeper loop.

    They run on the consumer's own timer, not in threads of their own: when the consumer stalls
    (reconnecting to Redis) or dies, the heartbeat stops with it, and the worker stops counting as live.
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, consumer: Any, **kwargs: Any) -> None:
        super().__init__(consumer, **kwargs)
        self.timers: list[Any] = []
        self.store = Store.from_settings(settings)
        self.sweeper = Sweeper(
            self.store,
            lambda article_id, analyses: enqueue_analyses(app, layout, article_id, analyses),
            CeleryBrokerView(app, self.store.redis, settings),
            settings,
            on_finished=_dispatch_webhook,
            resend_webhook=lambda article_id: enqueue_webhook(app, article_id),
        )

    def start(self, consumer: Any) -> None:
        name = str(consumer.hostname)
        self._beat(name)
        self.timers = [
            consumer.timer.call_repeatedly(HEARTBEAT_SECONDS, self._beat, (name,)),
            consumer.timer.call_repeatedly(settings.sweep_interval / 2, self._sweep),
        ]
        log.info("worker duties started", extra={"worker": name})

    def stop(self, consumer: Any) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers = []
        with contextlib.suppress(redis.RedisError):
            self.store.worker_gone(str(consumer.hostname))

    def _beat(self, name: str) -> None:
        try:
            self.store.worker_heartbeat(name)
        except redis.RedisError as error:
            log.warning("heartbeat failed", extra={"worker": name, "error": type(error).__name__})

    def _sweep(self) -> None:
        try:
            if self.sweeper.sweep_if_due() is not None:
                self.store.prune_indexes()  # listing entries of expired articles
        except BROKER_OUTAGES as error:
            log.warning("sweep failed", extra={"error": type(error).__name__})


app.steps["consumer"].add(WorkerDuties)
