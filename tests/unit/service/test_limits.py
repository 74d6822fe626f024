"""Rate limits per key or address (429 with Retry-After) and backlog backpressure (503 with Retry-After)."""

from __future__ import annotations

import logging
import sys

import fakeredis
import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from newsdesk.embedded import free_port
from newsdesk.settings import Settings
from newsdesk.store import NewArticle, Store
from service.app import LIMITER_OUTAGE_LOG, LimiterOutageLog, create_app
from service.auth import hash_key
from service.queue import ListQueue

ARTICLE = {"text": "Talks between the delegations resumed in Geneva on Monday."}


def client_with(fake_redis: fakeredis.FakeRedis, **overrides: object) -> FlaskClient:
    settings = Settings.from_env({}, key_prefix="unit", **{"rate_limit_storage": "memory://", **overrides})
    return create_app(settings, store=Store(fake_redis, "unit"), queue=ListQueue()).test_client()


def test_over_the_rate_limit_is_429_with_retry_after(fake_redis: fakeredis.FakeRedis) -> None:
    client = client_with(fake_redis, rate_limit="3/minute")
    statuses = [client.post("/v1/articles", json=ARTICLE).status_code for _ in range(3)]
    assert statuses == [202, 202, 202]
    limited = client.get("/v1/articles/any")
    assert limited.status_code == 429
    assert limited.mimetype == "application/problem+json"
    assert limited.get_json()["type"] == "urn:newsdesk:problem:too-many-requests"
    assert 0 < int(limited.headers["Retry-After"]) <= 61  # a 60 s window; its end rounded up to a second
    assert client.get("/healthz").status_code == 200  # health checks are never limited


def test_limits_are_per_api_key(fake_redis: fakeredis.FakeRedis) -> None:
    keys = f"a:{hash_key('key-a')},b:{hash_key('key-b')}"
    client = client_with(fake_redis, rate_limit="2/minute", api_keys=keys)
    for _ in range(2):
        assert client.get("/v1/seeds", headers={"Authorization": "Bearer key-a"}).status_code == 200
    assert client.get("/v1/seeds", headers={"Authorization": "Bearer key-a"}).status_code == 429
    assert client.get("/v1/seeds", headers={"Authorization": "Bearer key-b"}).status_code == 200


def test_backlog_over_its_bound_is_503_and_stores_nothing(fake_redis: fakeredis.FakeRedis) -> None:
    client = client_with(fake_redis, max_backlog=2)
    store = Store(fake_redis, "unit")
    for _ in range(2):
        store.create_article(NewArticle(text="Waiting for a worker."))
    response = client.post("/v1/articles", json=ARTICLE)
    assert response.status_code == 503
    assert response.get_json()["type"] == "urn:newsdesk:problem:overloaded"
    assert response.headers["Retry-After"] == "30"
    assert response.get_json()["detail"] == (
        "2 articles are waiting for analysis and this would add 1, over the bound of 2 "
        "(NEWSDESK_MAX_BACKLOG); nothing was stored. Retry later."
    )
    assert len(store.list_article_ids()) == 2
    batch = client.post("/v1/batches", json={"articles": [ARTICLE, ARTICLE, {"text": ""}]})
    assert batch.status_code == 503
    assert batch.get_json()["detail"].startswith("2 articles are waiting for analysis and this would add 2,")
    assert batch.get_json()["type"] == "urn:newsdesk:problem:overloaded"
    assert batch.headers["Retry-After"] == "30"
    assert len(store.list_article_ids()) == 2


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    def status(client: FlaskClient, forwarded_for: str) -> int:
        headers = {"X-Forwarded-For": forwarded_for}
        return client.get("/v1/seeds", headers=headers, environ_base={"REMOTE_ADDR": "10.0.0.2"}).status_code

    behind_proxy = client_with(fake_redis, rate_limit="2/minute", trusted_proxies=1)
    assert [status(behind_proxy, "203.0.113.7") for _ in range(3)] == [200, 200, 429]
    assert status(behind_proxy, "198.51.100.9") == 200
    # Not configured: the header is anybody's to write, so the proxy's own address is the client.
    direct = client_with(fake_redis, rate_limit="2/minute")
    assert [status(direct, f"203.0.113.{n}") for n in range(3)] == [200, 200, 429]


def test_refused_requests_count_and_a_client_over_its_limit_gets_429_first(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    """A malformed, oversized or non-JSON body uses up the budget like any request: the limiter counts
    before the body is read, so a client cannot have unlimited bodies parsed."""
    client = client_with(fake_redis, rate_limit="2/minute", max_body_bytes=1024)
    statuses = [
        client.post("/v1/articles", data=b"{not json", content_type="application/json").status_code,
        client.post("/v1/articles", data=b"x" * 2048, content_type="application/json").status_code,
        client.post("/v1/articles", data=b"text", content_type="text/plain").status_code,
        client.post("/v1/articles", json=ARTICLE).status_code,
    ]
    assert statuses == [400, 413, 429, 429]


def test_wrong_api_keys_are_limited_by_address_and_do_not_spend_a_valid_keys_budget(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    client = client_with(fake_redis, rate_limit="2/minute", api_keys=f"a:{hash_key('key-a')}")

    def get(authorization: str | None, address: str = "203.0.113.7") -> TestResponse:
        headers = {"Authorization": authorization} if authorization else {}
        return client.get("/v1/seeds", headers=headers, environ_base={"REMOTE_ADDR": address})

    # Key guessing is bounded like any other request, with or without a key.
    assert [get(f"Bearer guess-{n}").status_code for n in range(3)] == [401, 401, 429]
    over = get(None)
    assert over.status_code == 429
    assert over.get_json()["type"] == "urn:newsdesk:problem:too-many-requests"
    assert "Retry-After" in over.headers
    assert get(None, address="198.51.100.9").status_code == 401  # another address: a budget of its own
    # A valid key has its own budget, even from the address that used up its own guessing.
    assert [get("Bearer key-a").status_code for _ in range(3)] == [200, 200, 429]


def test_a_key_named_like_an_address_does_not_share_that_addresses_budget(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    client = client_with(fake_redis, rate_limit="1/minute", api_keys=f"203.0.113.7:{hash_key('key-a')}")
    remote = {"REMOTE_ADDR": "203.0.113.7"}
    wrong = client.get("/v1/seeds", headers={"Authorization": "Bearer wrong"}, environ_base=remote)
    assert wrong.status_code == 401  # spends the address's one request
    right = client.get("/v1/seeds", headers={"Authorization": "Bearer key-a"}, environ_base=remote)
    assert right.status_code == 200


def test_a_limiter_storage_outage_is_logged_once_a_minute_without_a_traceback(
    fake_redis: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With its Redis down the limiter lets requests through; Flask-Limiter would log a 3-5 KB traceback
    for each of them."""
    now = [1000.0]
    monkeypatch.setattr(LIMITER_OUTAGE_LOG, "clock", lambda: now[0])
    monkeypatch.setattr(LIMITER_OUTAGE_LOG, "_last", None)
    monkeypatch.setattr(LIMITER_OUTAGE_LOG, "_unlogged", 0)
    down = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    client = client_with(fake_redis, rate_limit="3/minute", rate_limit_storage=down)
    caplog.set_level(logging.INFO, logger="flask-limiter")

    def limiter_lines() -> list[logging.LogRecord]:
        return [record for record in caplog.records if record.name == "flask-limiter"]

    assert [client.get("/v1/seeds").status_code for _ in range(5)] == [200] * 5  # fails open
    (line,) = limiter_lines()
    assert line.levelno == logging.WARNING
    assert line.getMessage() == "rate limiting is off until Redis answers: the limiter's storage failed"
    assert line.exc_info is None
    assert (line.__dict__["error"], line.__dict__["unlogged"]) == ("ConnectionError", 0)
    now[0] += 59
    client.get("/v1/seeds")
    assert len(limiter_lines()) == 1
    now[0] += 2
    client.get("/v1/seeds")
    _, second = limiter_lines()
    assert second.exc_info is None
    assert second.__dict__["unlogged"] == 5  # the other four of the first five, and the one at 59 s


def test_other_limiter_errors_keep_their_traceback() -> None:
    record = logging.LogRecord("flask-limiter", logging.ERROR, __file__, 1, "Failed to rate limit", (), None)
    try:
        raise KeyError("a fault of ours")
    except KeyError:
        record.exc_info = sys.exc_info()
    assert LimiterOutageLog().filter(record)
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
