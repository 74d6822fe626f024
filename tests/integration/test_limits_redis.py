"""The rate limit counted in the real Redis, shared by two app instances (as by two API processes), and
the backlog bound held by concurrent submissions."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from newsdesk.settings import Settings
from newsdesk.store import BacklogFull, NewArticle, Store
from service.app import create_app
from service.queue import ListQueue

pytestmark = pytest.mark.integration


def test_rate_limit_is_shared_across_api_processes(live_settings: Settings) -> None:
    settings = Settings.from_env(
        {},
        redis_url=live_settings.redis_url,
        key_prefix=f"limits-{uuid.uuid4().hex[:8]}",
        rate_limit="4/minute",
    )
    first = create_app(settings, queue=ListQueue()).test_client()
    second = create_app(settings, queue=ListQueue()).test_client()
    statuses = [client.get("/v1/seeds").status_code for client in (first, second, first, second)]
    assert statuses == [200, 200, 200, 200]
    limited = second.get("/v1/seeds")
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0
    # The limiter's keys too start with NEWSDESK_KEY_PREFIX (limits' own prefix would be LIMITS).
    store = Store.from_settings(settings)
    keys = [key.decode() for key in store.redis.scan_iter(match=f"*{settings.key_prefix}*", count=1000)]
    assert keys
    assert all(key.startswith(f"{settings.key_prefix}:ratelimit:") for key in keys), keys
    store.redis.delete(*keys)


def test_concurrent_submissions_never_take_the_backlog_over_its_bound(live_settings: Settings) -> None:
    settings = Settings.from_env(
        {}, redis_url=live_settings.redis_url, key_prefix=f"backlog-{uuid.uuid4().hex[:8]}"
    )
    store = Store.from_settings(settings)

    def submit(number: int) -> bool:
        try:
            store.create_article(NewArticle(text=f"Article {number}."), max_backlog=10)
        except BacklogFull:
            return False
        return True

    try:
        with ThreadPoolExecutor(8) as pool:
            accepted = list(pool.map(submit, range(40)))
        assert sum(accepted) == 10  # counted and stored in one step: no two submissions share a count
        assert store.pending_count() == 10
    finally:
        for key in store.redis.scan_iter(match=f"{settings.key_prefix}:*", count=1000):
            store.redis.delete(key)
