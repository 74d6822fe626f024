"""The worker containers' health check (newsdesk/health.py), over fakeredis."""

from __future__ import annotations

import pytest

from newsdesk.embedded import free_port
from newsdesk.health import worker_check, worker_container_check
from newsdesk.store import Store


def test_a_worker_is_healthy_while_its_own_heartbeat_is_fresh(store: Store) -> None:
    store.worker_heartbeat("newsdesk@other-1")
    healthy, reason = worker_check(store, "newsdesk@box-")
    assert not healthy
    assert reason == "no heartbeat from newsdesk@box-* in the last 15 s"
    store.worker_heartbeat("newsdesk@box-7")
    assert worker_check(store, "newsdesk@box-") == (True, "heartbeat of newsdesk@box-7 in the last 15 s")


def test_a_full_redis_passes_the_worker_without_a_heartbeat(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fakeredis has no maxmemory; tests/integration/test_faults.py fills a real Redis."""
    monkeypatch.setattr(store, "memory_full", lambda: True)
    healthy, reason = worker_check(store, "newsdesk@box-")
    assert healthy
    assert reason.startswith("Redis is full (maxmemory) and refuses the heartbeat")


def test_the_container_check_fails_with_a_reason_when_redis_is_unreachable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    assert worker_container_check() == 1
    assert capsys.readouterr().err == "Redis is unreachable (ConnectionError)\n"
