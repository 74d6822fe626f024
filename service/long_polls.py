"""The long-polls of one API process (`?wait=N`): how many may wait at once, and their end at shutdown.

Each waiting request holds one of gunicorn's threads for up to NEWSDESK_MAX_WAIT seconds. Without a
bound, as many waiting clients as there are threads would leave none for health checks, metrics or
submissions; a long-poll beyond the bound is answered at once, as a plain poll (with `Retry-After`).
When the process is told to stop (SIGTERM, a deploy), waiting requests answer with what is there at
once instead of holding the stop for their whole wait and being cut off without an answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from newsdesk.store import Store

# Set in the process when its gunicorn worker is told to stop gracefully (newsdesk/gunicorn_app.py).
STOPPING = threading.Event()


class LongPolls:
    """At most `limit` long-polls waiting at once in this process (None: no bound)."""

    def __init__(self, limit: int | None = None) -> None:
        self._slots = threading.BoundedSemaphore(limit) if limit else None

    def wait(self, store: Store, channel: str, finished: Callable[[], bool], seconds: float) -> None:
        """Store.wait_for_message, ended early if the process is told to stop; or no wait at all when the
        others waiting use every slot, or the process is stopping: the request answers at once."""
        if STOPPING.is_set():
            return
        if self._slots is None:
            store.wait_for_message(channel, finished, seconds, stop=STOPPING)
        elif self._slots.acquire(blocking=False):
            try:
                store.wait_for_message(channel, finished, seconds, stop=STOPPING)
            finally:
                self._slots.release()


def threads_left_free(threads: int) -> int:
    """The bound for a gunicorn process of `threads` threads: all but two, so that health checks and
    submissions always find a thread, and at least one (with one or two threads, a long-poll may still
    wait: it is then the one thing the process serves at once)."""
    return max(1, threads - 2)
