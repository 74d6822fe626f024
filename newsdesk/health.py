"""Health as /readyz and the worker containers' health check (docker-compose.yml) judge it.

Both count a worker live by its heartbeat. A Redis at its maxmemory (noeviction) refuses the heartbeat
while the worker runs on, so both ask whether Redis is full before they report that no worker is alive.
"""

from __future__ import annotations

import socket
import sys

import redis

from newsdesk.settings import Settings
from newsdesk.store import Store

# A worker writes a heartbeat every 5 s; three missed beats and it counts as gone.
WORKER_MAX_AGE_SECONDS = 15.0
REDIS_FULL = "full"


def redis_failure(error: redis.RedisError) -> str:
    """A failed health check's Redis state: unreachable, or answering with an error (a read-only replica
    refuses the memory probe's write, for one)."""
    reached = not isinstance(error, redis.ConnectionError | redis.TimeoutError)
    return f"{'failing' if reached else 'unreachable'} ({type(error).__name__})"


def worker_check(store: Store, name_prefix: str) -> tuple[bool, str]:
    """Whether the workers named `name_prefix...` are healthy, and why, in one line.

    A Redis that refuses writes for memory leaves the heartbeat stale through no fault of the worker, so
    it passes then: restarting it would not give Redis room, and would cut off its running tasks. The
    API's /readyz, which fails while Redis is full, is where the service's state shows.
    """
    live = [name for name in store.live_workers(WORKER_MAX_AGE_SECONDS) if name.startswith(name_prefix)]
    if live:
        return True, f"heartbeat of {', '.join(live)} in the last {WORKER_MAX_AGE_SECONDS:g} s"
    if store.memory_full():
        return True, (
            "Redis is full (maxmemory) and refuses the heartbeat: the worker is not judged by it until "
            "Redis has room"
        )
    return False, f"no heartbeat from {name_prefix}* in the last {WORKER_MAX_AGE_SECONDS:g} s"


def worker_container_check() -> int:
    """The worker service's health check: exit status 0 when healthy, the reason on stdout.

    `newsdesk worker` names its node newsdesk@<host>-<pid>, and a container's host name is its own.
    """
    try:
        healthy, reason = worker_check(
            Store.from_settings(Settings.from_env()), f"newsdesk@{socket.gethostname()}-"
        )
    except redis.RedisError as error:
        healthy, reason = False, f"Redis is {redis_failure(error)}"
    print(reason, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1
