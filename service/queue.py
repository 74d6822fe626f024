"""How the API hands an article to the workers: a small protocol, so tests can use an in-memory queue."""

from __future__ import annotations

from typing import Protocol

from celery import Celery

from newsdesk.settings import Settings
from workers.celery_app import QueueLayout, create_celery, enqueue_analyses


class ArticleQueue(Protocol):
    def enqueue(self, article_id: str) -> None:
        """Ask for every analysis of a stored article."""
        ...


class CeleryQueue:
    """Sends the analysis tasks by name through the Celery broker, on the queues the settings name."""

    def __init__(self, settings: Settings) -> None:
        self.celery: Celery = create_celery(settings)
        self.layout = QueueLayout.from_settings(settings)

    def enqueue(self, article_id: str) -> None:
        enqueue_analyses(self.celery, self.layout, article_id)


class InMemoryQueue:
    """Records what was enqueued; used by the API's unit tests, where no worker runs."""

    def __init__(self) -> None:
        self.article_ids: list[str] = []

    def enqueue(self, article_id: str) -> None:
        self.article_ids.append(article_id)
