"""The services a running app holds (settings, store, queue), as views reach them."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from newsdesk.settings import Settings
from newsdesk.store import Store
from service.long_polls import LongPolls
from service.queue import ArticleQueue


@dataclass(frozen=True)
class Services:
    settings: Settings
    api_keys: dict[str, str]  # SHA-256 of a key -> the name it is known by (owner of its articles)
    store: Store
    queue: ArticleQueue
    long_polls: LongPolls


def services() -> Services:
    """The current app's services."""
    return current_app.extensions["newsdesk"]  # type: ignore[no-any-return]
