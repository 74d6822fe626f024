"""How the API hands an article to the workers: a small protocol, so tests can use an in-memory queue."""

from __future__ import annotations

from typing import Protocol

from celery import Celery

from workers.celery_app import enqueue_analyses


class ArticleQueue(Protocol):
    def enqueue(self, article_id: str) -> None:
        """Ask for every analysis of a stored article."""
        ...


class CeleryQueue:
    """Sends the analysis tasks by name through the Celery broker."""

    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def enqueue(self, article_id: str) -> None:
        enqueue_analyses(self.celery, article_id)


class InMemoryQueue:
    """Records what was enqueued; used by the API's unit tests, where no worker runs."""

    def __init__(self) -> None:
        self.article_ids: list[str] = []

    def enqueue(self, article_id: str) -> None:
        self.article_ids.append(article_id)
