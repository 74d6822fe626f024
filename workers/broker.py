"""The Redis broker transport, with one fix: a worker survives the loss of its Redis connection.

When the connection drops, Celery closes the channel, and kombu's Redis channel then tries to give its
unacknowledged messages back through a connection that has already been released: it fails with an
AttributeError that Celery does not expect, and the worker process exits ("Unrecoverable error:
AttributeError: 'NoneType' object has no attribute 'hostname'"; seen with kombu 5.7 on a Redis
restart, and reported upstream in similar forms, e.g. celery/kombu#582). Reporting a missing
connection as a connection error instead lets Celery reconnect as it does for any broker outage. The
messages are not lost meanwhile: they stay in Redis's unacknowledged set and come back after the
visibility timeout (or the sweeper re-queues their articles).
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            raise redis.ConnectionError("the broker connection was released")
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[no-untyped-call]


class Transport(kombu_redis.Transport):
    Channel = Channel
