"""Long-polls against a real `newsdesk api` (gunicorn): bounded per process, ended by a graceful stop.

No worker runs here, so an article stays `queued` and every `?wait=` would wait its whole time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import ServiceProcess

pytestmark = pytest.mark.e2e

TEXT = "Russia and the United States met at the UN on Monday. Talks went well."


def _timed_get(url: str) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    response = httpx.get(url, timeout=90)
    return time.monotonic() - started, response


def test_long_polls_leave_threads_free_and_end_when_the_api_stops(
    start_api: Callable[..., tuple[ServiceProcess, str]],
) -> None:
    # 2 processes of 3 threads: at most one long-poll waits in each, two threads stay free.
    api, url = start_api({"NEWSDESK_API_THREADS": "3"})
    article_id = httpx.post(f"{url}/v1/articles", json={"text": TEXT}, timeout=10).json()["id"]
    with ThreadPoolExecutor(max_workers=6) as pool:
        polls = [pool.submit(_timed_get, f"{url}/v1/articles/{article_id}?wait=60") for _ in range(6)]
        time.sleep(2)
        answered_at_once = [poll.result() for poll in polls if poll.done()]
        assert len(answered_at_once) >= 4  # beyond the two slots: plain polls
        for elapsed, response in answered_at_once:
            assert elapsed < 2
            assert response.status_code == 200
            assert response.headers["Retry-After"] == "1"
        started = time.monotonic()
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200  # a thread was free for it
        assert time.monotonic() - started < 1

        stopping = time.monotonic()
        api.stop()  # SIGTERM: graceful
        stopped_in = time.monotonic() - stopping
        for poll in polls:
            elapsed, response = poll.result(timeout=30)
            assert response.status_code == 200  # an answer with the state now, not a cut connection
            assert response.json()["status"] == "queued"
            assert elapsed < 10  # not the 60 s asked for, nor gunicorn's 20 s graceful timeout
    assert stopped_in < 10
