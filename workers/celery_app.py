"""The Celery application: Redis broker, at-least-once delivery, and the queues the analyses travel on.

An article's analyses travel together: one message per queue, and by default one queue (`analyses`), so
an article costs one message, one delivery and one read of its text, whatever the number of analyses.
NEWSDESK_ANALYSIS_QUEUES moves an analysis to a queue of its own ("stance=stance"), so ops can give the
expensive one more workers (`newsdesk worker --queues stance`).

The API imports this module to enqueue tasks by name; it must stay free of analysis imports.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery
from kombu.utils.uuid import uuid

from newsdesk.settings import Settings
from newsdesk.store import QueuedMessage

log = logging.getLogger(__name__)

# The task that runs some analyses of one article: args [article id, [analysis names]].
ANALYSIS_TASK = "analysis.run"
DEFAULT_ANALYSIS_QUEUE = "analyses"
# The order a task runs its analyses in: the cheap ones first, so their results are stored soonest.
RUN_ORDER: tuple[str, ...] = ("summary", "duplicates", "stance")
# Webhook deliveries have a queue of their own, so slow receivers never hold up analyses.
WEBHOOK_TASK = "webhooks.deliver"
WEBHOOK_QUEUE = "webhooks"
_QUEUE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class QueueLayout:
    """The queue each analysis travels on (NEWSDESK_ANALYSIS_QUEUES); the API and workers must agree."""

    queue_of: Mapping[str, str]

    @classmethod
    def from_settings(cls, settings: Settings) -> QueueLayout:
        return cls.parse(settings.analysis_queues)

    @classmethod
    def parse(cls, text: str) -> QueueLayout:
        """Every analysis on `analyses`, except those the `analysis=queue` pairs move.

        Settings checks NEWSDESK_ANALYSIS_QUEUES with this, so a bad value stops every process at start.
        """
        queue_of = dict.fromkeys(RUN_ORDER, DEFAULT_ANALYSIS_QUEUE)
        for entry in (part.strip() for part in text.split(",")):
            if not entry:
                continue
            analysis, separator, queue = (item.strip() for item in entry.partition("="))
            if (
                not separator
                or analysis not in queue_of
                or not _QUEUE_NAME.match(queue)
                or (queue == WEBHOOK_QUEUE)
            ):
                raise ValueError(
                    f"{entry!r} is not analysis=queue, with the analysis one of {', '.join(RUN_ORDER)} "
                    f"and the queue a lower-case name other than {WEBHOOK_QUEUE!r}"
                )
            queue_of[analysis] = queue
        return cls(queue_of)

    @property
    def queues(self) -> tuple[str, ...]:
        """Every queue a worker may consume: the analyses' queues, then the webhook deliveries'."""
        return (*dict.fromkeys(self.queue_of[name] for name in RUN_ORDER), WEBHOOK_QUEUE)

    def groups(self, analyses: Iterable[str]) -> dict[str, list[str]]:
        """The given analyses by queue, each group in run order: one message per group."""
        wanted = set(analyses)
        groups: dict[str, list[str]] = {}
        for name in RUN_ORDER:
            if name in wanted:
                groups.setdefault(self.queue_of[name], []).append(name)
        return groups


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
        # Analysis messages name their queue when sent (QueueLayout); webhooks have a route.
        task_routes={WEBHOOK_TASK: {"queue": WEBHOOK_QUEUE}},
        task_default_queue=DEFAULT_ANALYSIS_QUEUE,
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
        self.layout = QueueLayout.from_settings(settings)
        # kombu's Redis transport keeps every delivered, unacknowledged message (running or prefetched)
        # in this hash ("unacked", its default name, under our key prefix) until it is acknowledged.
        self.key_prefix = broker_key_prefix(settings)
        self.unacked_key = f"{self.key_prefix}unacked"

    def queue_depths(self) -> dict[str, int]:
        """Messages waiting in each queue ("analyses", ..., "webhooks").

        Plain reads of the lists: kombu's queue_declare also writes the queue's binding, inside MULTI,
        which a Redis at its maxmemory refuses, and /metrics would fail just when the backlog matters.
        """
        pipe = self.client.pipeline(transaction=False)
        for queue in self.layout.queues:
            pipe.llen(self._queue_key(queue))
        return {queue: int(depth) for queue, depth in zip(self.layout.queues, pipe.execute(), strict=True)}

    def _queue_key(self, queue: str) -> str:
        # A message of priority 0 (all of ours) lies in the queue's own list, under our key prefix.
        return f"{self.key_prefix}{queue}"

    def held(self) -> set[tuple[str, str]]:
        """(analysis, article id) for each analysis in a message a worker has taken and not acknowledged,
        and (WEBHOOK_TASK, article id) for each such webhook delivery."""
        held: set[tuple[str, str]] = set()
        for raw in self.client.hvals(self.unacked_key):
            with suppress(ValueError, IndexError, TypeError):
                held |= _work_of(json.loads(raw)[0])  # the hash holds [message, exchange, routing key]
        return held

    def waiting(self, queue: str) -> set[tuple[str, str]]:
        """The same pairs for the messages waiting in a queue: a read of the whole list, for the rare
        question whether one particular message is among them."""
        waiting: set[tuple[str, str]] = set()
        key = self._queue_key(queue)
        for start in range(0, int(self.client.llen(key)), _SCAN_CHUNK):
            for raw in self.client.lrange(key, start, start + _SCAN_CHUNK - 1):
                with suppress(ValueError, TypeError):
                    waiting |= _work_of(json.loads(raw))
        return waiting


_SCAN_CHUNK = 1000  # messages per LRANGE: a long backlog is read in replies of a few hundred KB


def _work_of(message: Any) -> set[tuple[str, str]]:
    """(analysis, article id) per analysis an analysis message carries, or (WEBHOOK_TASK, article id) for
    a webhook delivery; nothing for a message that is not ours."""
    try:
        args = json.loads(base64.b64decode(message["body"]))[0]  # protocol 2: [args, kwargs, embed]
        task = str(message["headers"]["task"])
        if task == ANALYSIS_TASK:
            return {(str(name), str(args[0])) for name in args[1]}
        if task == WEBHOOK_TASK:
            return {(WEBHOOK_TASK, str(args[0]))}
    except (ValueError, KeyError, IndexError, TypeError):
        pass
    return set()


def enqueue_analyses(
    app: Celery, layout: QueueLayout, article_id: str, analyses: Iterable[str] = RUN_ORDER
) -> None:
    """Send the article's analyses: one message per queue they travel on, carrying only the article id
    and the analyses' names. The sweeper's re-queue; the API's messages are `analysis_messages`."""
    with app.producer_or_acquire() as producer:
        for queue, names in layout.groups(analyses).items():
            args = [article_id, names]
            sent = app.send_task(
                ANALYSIS_TASK,
                args=args,
                queue=queue,
                producer=producer,
                # What Celery would otherwise work out on every send: the queues need no declaring to be
                # published to (a message goes straight to its queue's list; workers declare what they
                # consume), and the arguments are short. As `analysis_messages` writes them too.
                declare=[],
                argsrepr=repr(args),
                kwargsrepr="{}",
            )
            # The task id links this line to the worker's lines about the same task.
            log.info(
                "task sent", extra={"article_id": article_id, "analyses": ",".join(names), "task_id": sent.id}
            )


def analysis_messages(
    app: Celery, layout: QueueLayout, key_prefix: str, article_id: str, analyses: Iterable[str] = RUN_ORDER
) -> list[QueuedMessage]:
    """The messages `enqueue_analyses` would send, as kombu's Redis transport stores them in a queue's
    list, for the store to push in the step that stores the article (`Store.create_article`).

    Celery builds the task message itself (`as_task_v2`: protocol 2 headers and body); only the
    transport's envelope is written here, the fields kombu's `Producer.publish` and the virtual channel's
    `basic_publish` add (a test compares the two on every field but the ids). Publishing through kombu
    instead would cost the API a round trip and a third of a submission's CPU, and an article could be
    stored without its message if the process died in between.
    """
    messages = []
    for queue, names in layout.groups(analyses).items():
        args = [article_id, names]
        task_id = uuid()
        task = app.amqp.as_task_v2(
            task_id,
            ANALYSIS_TASK,
            args=args,
            kwargs={},
            reply_to=app.thread_oid,
            ignore_result=None,
            argsrepr=repr(args),
            kwargsrepr="{}",
        )
        body = json.dumps(task.body)  # the app's task_serializer: plain JSON of plain values
        envelope = {
            "body": base64.b64encode(body.encode()).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": task.headers,
            "properties": {
                **task.properties,
                "argsrepr": task.headers["argsrepr"],
                "kwargsrepr": task.headers["kwargsrepr"],
                "delivery_mode": 2,  # persistent
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,  # the queue's own list; a priority would add a suffix to the key
                "body_encoding": "base64",
                "delivery_tag": uuid(),
            },
        }
        messages.append(QueuedMessage(f"{key_prefix}{queue}", json.dumps(envelope), task_id))
    return messages


def enqueue_webhook(app: Celery, article_id: str) -> None:
    """Send the delivery of a finished article's webhook."""
    app.send_task(WEBHOOK_TASK, args=[article_id])
