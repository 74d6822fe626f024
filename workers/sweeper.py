"""The sweeper: a safety net that re-queues analyses of articles that stopped making progress, and webhook
deliveries that were claimed but never sent.

Messages are normally never lost (an article and its messages are stored in one step, late
acknowledgement, redelivery of a dead process's task, Redis with an append-only file), but an article can
still stall: a whole worker died holding its message, a re-queue's send failed, or Redis lost the last
second of writes. Every worker runs the sweeper
loop; a Redis lock lets one sweep run per interval.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from newsdesk.settings import Settings
from newsdesk.store import ANALYSES, Store
from workers.celery_app import WEBHOOK_QUEUE, WEBHOOK_TASK, QueueLayout
from workers.pipeline import give_up_reason

log = logging.getLogger(__name__)

Enqueue = Callable[[str, Sequence[str]], None]  # (article id, analysis names)


class BrokerView(Protocol):
    def queue_depths(self) -> Mapping[str, int]:
        """Queue name -> messages waiting in it."""
        ...

    def held(self) -> set[tuple[str, str]]:
        """(analysis, article id) of messages that workers have taken (running or prefetched)."""
        ...

    def waiting(self, queue: str) -> set[tuple[str, str]]:
        """The same pairs for the messages waiting in one queue (reads the whole queue)."""
        ...


@dataclass(frozen=True, slots=True)
class SweepResult:
    requeued: int = 0
    given_up: int = 0
    webhooks_resent: int = 0


class Sweeper:
    def __init__(
        self,
        store: Store,
        enqueue: Enqueue,
        broker: BrokerView,
        settings: Settings,
        on_finished: Callable[[str], None] | None = None,
        resend_webhook: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.enqueue = enqueue
        # An article whose webhook is due (the sweeper gave up on it, or its dispatch never happened):
        # claim the webhook and send its delivery.
        self.on_finished = on_finished
        self.resend_webhook = resend_webhook  # send the delivery of a claimed (queued) webhook again
        self.broker = broker
        self.settings = settings
        self.layout = QueueLayout.from_settings(settings)
        self._lock_key = f"{store.prefix}:sweeper-lock"
        self._token = uuid.uuid4().hex

    def sweep_once(self) -> SweepResult:
        """Re-queue the unfinished analyses of stalled articles; give up on those tried too often.

        An analysis whose message a worker holds (running or prefetched) is not lost: if that worker
        dies, the broker gives the message back after the visibility timeout. A queued one, while its
        queue still holds messages, is probably waiting its turn in a backlog, and an overload must not
        be doubled. A started one is waiting only if its message is in the queue (given back after a
        worker died, or the sweeper's own re-queue): that is looked up, since a backlog is no sign of
        it. Otherwise its message is gone (a hard time-limit kill acknowledges it, a re-queue's send
        failed, Redis lost the last writes in a crash), and it is sent again.
        """
        requeued = given_up = 0
        stale = self.store.stale_articles(self.settings.stuck_after)
        depths = self.broker.queue_depths() if stale else {}
        held = self.broker.held() if stale else set()
        waiting = _WaitingMessages(self.broker)
        for article_id in stale:
            article = self.store.get_article(article_id)
            if article is None:
                continue
            lost: list[str] = []
            for name in ANALYSES:
                state = article.analyses[name]
                if state.status in {"done", "failed"}:
                    continue
                queue = self.layout.queue_of[name]
                if (name, article_id) in held or (
                    depths.get(queue, 0) > 0
                    and (state.status == "queued" or (name, article_id) in waiting.of(queue))
                ):
                    continue
                if state.attempts >= self.settings.max_attempts:
                    reason = give_up_reason(name, state.attempts)
                    status = self.store.finish_analysis(
                        article_id, name, result=None, version="", error=reason
                    )
                    given_up += 1
                    if status in {"done", "failed"} and self.on_finished is not None:
                        self.on_finished(article_id)
                else:
                    lost.append(name)
            if lost:
                self.enqueue(article_id, lost)
                requeued += len(lost)
            self.store.touch_pending(article_id)
        resent = self._sweep_webhooks()
        if requeued or given_up or resent:
            log.warning(
                "sweep", extra={"requeued": requeued, "given_up": given_up, "webhooks_resent": resent}
            )
        return SweepResult(requeued, given_up, resent)

    def _sweep_webhooks(self) -> int:
        """Send again the webhooks stuck without a delivery message: `due` ones whose dispatch never ran
        (it failed, or its worker died first), `queued` ones whose message is neither waiting in the
        webhooks queue nor held by a worker (a worker died between claiming and sending, or a hard
        time-limit kill acknowledged it). A delivery sent twice is one receivers already expect:
        delivery is at-least-once, with one delivery id. The message sent again starts with no Celery
        retries, but the attempts are counted on the article, so it goes on from them and a webhook
        still settles at NEWSDESK_WEBHOOK_MAX_ATTEMPTS."""
        if self.on_finished is None or self.resend_webhook is None:
            return 0
        stale = self.store.stale_webhooks(self.settings.stuck_after)
        if not stale:
            return 0
        held = {article_id for task, article_id in self.broker.held() if task == WEBHOOK_TASK}
        backlog = self.broker.queue_depths().get(WEBHOOK_QUEUE, 0) > 0
        waiting = _WaitingMessages(self.broker)
        resent = 0
        for article_id, state in stale:
            if state == "due":
                self.on_finished(article_id)
            elif article_id in held or (backlog and (WEBHOOK_TASK, article_id) in waiting.of(WEBHOOK_QUEUE)):
                continue
            else:
                self.resend_webhook(article_id)
            self.store.touch_webhook(article_id)
            resent += 1
        return resent

    def sweep_if_due(self) -> SweepResult | None:
        """Sweep unless another process swept within the last interval."""
        interval_ms = max(1, int(self.settings.sweep_interval * 1000))
        if not self.store.redis.set(self._lock_key, self._token, nx=True, px=interval_ms):
            return None
        return self.sweep_once()


class _WaitingMessages:
    """The broker's waiting messages per queue, read once per sweep and only for a queue asked about."""

    def __init__(self, broker: BrokerView) -> None:
        self.broker = broker
        self._queues: dict[str, set[tuple[str, str]]] = {}

    def of(self, queue: str) -> set[tuple[str, str]]:
        if queue not in self._queues:
            self._queues[queue] = self.broker.waiting(queue)
        return self._queues[queue]
