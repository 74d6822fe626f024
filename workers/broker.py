"""The Redis broker transport, with two changes: a worker survives the loss of its Redis connection, and
publishing reuses one client.

When the connection drops, Celery closes the channel, and kombu's Redis channel then tries to give its
unacknowledged messages back through a connection that has already been released: it fails with an
AttributeError that Celery does not expect, and the worker process exits ("Unrecoverable error:
AttributeError: 'NoneType' object has no attribute 'hostname'"; seen with kombu 5.7 on a Redis
restart, and reported upstream in similar forms, e.g. celery/kombu#582). Reporting a missing
connection as a connection error instead lets Celery reconnect as it does for any broker outage. The
messages are not lost meanwhile: they stay in Redis's unacknowledged set and come back after the
visibility timeout (or the sweeper re-queues their articles).

kombu's channel builds a new redis-py client for every publish and acknowledgement (`conn_or_acquire`),
over its connection pool; building one (its response-callback table) cost about 0.75 ms, a quarter of
the CPU of sending a task (`newsdesk bench`, cProfile of the API). The client is kept per pool instead:
redis-py clients are thread-safe, and a new pool (after a reconnect) gets a new client.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _pooled_client: redis.Redis | None = None

    @contextlib.contextmanager
    def conn_or_acquire(self, client: redis.Redis | None = None) -> Iterator[redis.Redis]:
        if client:
            yield client
            return
        pool = self.pool
        cached = self._pooled_client
        if cached is None or cached.connection_pool is not pool:
            cached = self._pooled_client = self._create_client()  # type: ignore[no-untyped-call]
        yield cached

    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            raise redis.ConnectionError("the broker connection was released")
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[no-untyped-call]


class Transport(kombu_redis.Transport):
    Channel = Channel
