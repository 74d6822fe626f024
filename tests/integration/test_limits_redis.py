"""The rate limit counted in the real Redis, shared by two app instances (as by two API processes)."""

from __future__ import annotations

import uuid

import pytest

from newsdesk.settings import Settings
from service.app import create_app
from service.queue import InMemoryQueue

pytestmark = pytest.mark.integration


def test_rate_limit_is_shared_across_api_processes(live_settings: Settings) -> None:
    settings = Settings.from_env(
        {},
        redis_url=live_settings.redis_url,
        key_prefix=f"limits-{uuid.uuid4().hex[:8]}",
        rate_limit="4/minute",
    )
    first = create_app(settings, queue=InMemoryQueue()).test_client()
    second = create_app(settings, queue=InMemoryQueue()).test_client()
    statuses = [client.get("/v1/seeds").status_code for client in (first, second, first, second)]
    assert statuses == [200, 200, 200, 200]
    limited = second.get("/v1/seeds")
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0
