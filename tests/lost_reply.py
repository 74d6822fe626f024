"""A store call whose write reaches Redis and is applied, but whose reply never comes back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import pytest
import redis

T = TypeVar("T")


class LosingFirstReply(Generic[T]):
    """Wraps a real store method: its first call runs against Redis (the write is applied) and then
    raises the ConnectionError of a connection dropped before the reply arrived; later calls are plain.
    `calls` shows whether a caller tried again."""

    def __init__(self, method: Callable[..., T]) -> None:
        self.method = method
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> T:
        self.calls += 1
        reply = self.method(*args, **kwargs)
        if self.calls == 1:
            raise redis.ConnectionError("Connection closed by server.")
        return reply


# The writes a run of analyses makes (workers.pipeline.run_analyses).
RUN_WRITES = ("start_analysis_and_read", "finish_analysis_and_start", "finish_analysis")


def lose_first_replies(
    store: Any, methods: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> dict[str, LosingFirstReply[Any]]:
    """Make each of the store's `methods` lose its first reply (see LosingFirstReply); the wrappers."""
    lossy = {method: LosingFirstReply(getattr(store, method)) for method in methods}
    for method, wrapper in lossy.items():
        monkeypatch.setattr(store, method, wrapper)
    return lossy
