"""The Celery application: Redis broker, at-least-once delivery, one named queue per analysis.

The API imports this module to enqueue tasks by name; it must stay free of analysis imports.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import redis
from celery import Celery

from newsdesk.settings import Settings

log = logging.getLogger(__name__)

# Task name -> queue. Ops can run workers on a subset of queues to give an expensive analysis more
# processes (`newsdesk worker --queues stance`).
ROUTES: dict[str, str] = {
    "analysis.summary": "summary",
    "analysis.stance": "stance",
    "analysis.duplicates": "duplicates",
}
# Webhook deliveries have a queue of their own, so slow receivers never hold up analyses.
WEBHOOK_TASK = "webhooks.deliver"
WEBHOOK_QUEUE = "webhooks"
QUEUES: tuple[str, ...] = (*dict.fromkeys(ROUTES.values()), WEBHOOK_QUEUE)


def broker_key_prefix(settings: Settings) -> str:
    return f"{settings.key_prefix}:celery:"


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    return {
        # An unacknowledged message goes back to the queue after this long; it must outlast any task.
        "visibility_timeout": settings.visibility_timeout,
        # ...checked every tenth of it (kombu's default scans only every ~100 s, whatever the timeout), so
        # a dead worker's messages are back within about 1.1 visibility timeouts.
        "unacked_restore_interval": max(1, settings.visibility_timeout // 10),
        "unacked_restore_throttle": 1,
        # Keys of the queues live under the service's prefix, so several deployments (or test runs)
        # can share one Redis.
        "global_keyprefix": broker_key_prefix(settings),
        "socket_timeout": settings.redis_timeout * 5,
        "socket_connect_timeout": settings.redis_timeout,
    }


def create_celery(settings: Settings) -> Celery:
    app = Celery("newsdesk", set_as_current=False)
    transport = broker_transport_options(settings)
    app.conf.update(
        broker_url=settings.redis_url,
        # kombu's Redis transport with the fix in workers/broker.py, for plain redis:// URLs.
        broker_transport="workers.broker:Transport" if settings.redis_url.startswith("redis://") else None,
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=settings.redis_timeout,
        # Publishing gives up fast when Redis is down, so the API can answer 503 instead of hanging.
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.2,
        },
        # The store holds results; Celery's result backend would be a second, unread copy.
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        # At-least-once: acknowledge after the task ran; give a message back if its process died.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.task_time_limit,
        task_soft_time_limit=max(1, int(settings.task_time_limit * 0.9)),
        task_routes={
            **{name: {"queue": queue} for name, queue in ROUTES.items()},
            WEBHOOK_TASK: {"queue": WEBHOOK_QUEUE},
        },
        task_default_queue=QUEUES[0],
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        enable_utc=True,
    )
    return app


class CeleryBrokerView:
    """What the broker holds, for the sweeper: queue backlogs, and messages workers have taken."""

    def __init__(self, app: Celery, client: redis.Redis, settings: Settings) -> None:
        self.app = app
        self.client = client
        # kombu's Redis transport keeps every delivered, unacknowledged message (running or prefetched)
        # in this hash ("unacked", its default name, under our key prefix) until it is acknowledged.
        self.unacked_key = f"{broker_key_prefix(settings)}unacked"

    def queue_depths(self) -> dict[str, int]:
        """Messages waiting in each analysis's queue, keyed by analysis ("summary", ...), and in the
        webhook deliveries' queue ("webhooks")."""
        queues = {task_name.removeprefix("analysis."): queue for task_name, queue in ROUTES.items()}
        queues[WEBHOOK_QUEUE] = WEBHOOK_QUEUE
        with self.app.connection_for_read() as connection:
            channel = connection.default_channel
            return {
                name: int(channel.queue_declare(queue=queue).message_count) for name, queue in queues.items()
            }

    def held(self) -> set[tuple[str, str]]:
        """(analysis, article id) of each message a worker has taken and not acknowledged."""
        held: set[tuple[str, str]] = set()
        for raw in self.client.hvals(self.unacked_key):
            try:
                message = json.loads(raw)[0]
                args = json.loads(base64.b64decode(message["body"]))[
                    0
                ]  # Celery protocol 2: [args, kwargs, embed]
                held.add((str(message["headers"]["task"]).removeprefix("analysis."), str(args[0])))
            except (ValueError, KeyError, IndexError, TypeError):
                continue  # not an analysis message
        return held


def enqueue_analysis(app: Celery, analysis: str, article_id: str, producer: Any = None) -> None:
    """Send the task of one analysis ("summary", ...); the message carries only the article id."""
    sent = app.send_task(f"analysis.{analysis}", args=[article_id], producer=producer)
    # The task id links this line to the worker's lines about the same task.
    log.info("task sent", extra={"article_id": article_id, "analysis": analysis, "task_id": sent.id})


def enqueue_analyses(app: Celery, article_id: str) -> None:
    """Send one task per analysis, through one producer taken from the pool once."""
    with app.producer_or_acquire() as producer:
        for task_name in ROUTES:
            enqueue_analysis(app, task_name.removeprefix("analysis."), article_id, producer)


def enqueue_webhook(app: Celery, article_id: str) -> None:
    """Send the delivery of a finished article's webhook."""
    app.send_task(WEBHOOK_TASK, args=[article_id])
