"""How the API hands an article to the workers: the messages that the store pushes in the same step as it
stores the article. A small protocol, so the API's unit tests can use plain messages that no worker reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import redis
from celery import Celery

from newsdesk.settings import Settings
from newsdesk.store import QueuedMessage
from workers.celery_app import QueueLayout, analysis_messages, broker_key_prefix, create_celery


class ArticleQueue(Protocol):
    def messages(self, article_id: str) -> Sequence[QueuedMessage]:
        """The messages that ask for every analysis of the article with this id."""
        ...


class CeleryQueue:
    """Celery task messages on the broker's queues, as the settings lay them out."""

    def __init__(self, settings: Settings) -> None:
        self.celery: Celery = create_celery(settings)
        self.layout = QueueLayout.from_settings(settings)
        self.key_prefix = broker_key_prefix(settings)

    def messages(self, article_id: str) -> Sequence[QueuedMessage]:
        return analysis_messages(self.celery, self.layout, self.key_prefix, article_id)


class ListQueue:
    """Each message is the bare article id, on one Redis list; for the API's unit tests, where no worker
    runs. `article_ids(client)` reads back what was queued, oldest first."""

    key = "unit-tests:queued"

    def messages(self, article_id: str) -> Sequence[QueuedMessage]:
        return [QueuedMessage(self.key, article_id, article_id)]

    def article_ids(self, client: redis.Redis) -> list[str]:
        queued: list[bytes] = client.lrange(self.key, 0, -1)  # type: ignore[assignment]  # a sync client
        return [raw.decode() for raw in reversed(queued)]
