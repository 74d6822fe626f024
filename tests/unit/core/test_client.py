"""The Python client against the real WSGI app (in-process, through httpx's WSGI transport)."""

from __future__ import annotations

import time

import fakeredis
import httpx
import pytest
from flask import Flask

from newsdesk.client import NewsdeskClient
from newsdesk.settings import Settings
from newsdesk.store import Store
from service.app import create_app
from service.queue import ListQueue

TEXT = "Russia and the United States met at the UN on Monday. Talks went well."


class Counting(httpx.WSGITransport):
    """The app's own transport, counting requests and the `wait` each asked for."""

    def __init__(self, app: Flask) -> None:
        super().__init__(app=app)
        self.waits: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.waits.append(request.url.params.get("wait"))
        return super().handle_request(request)


def client_for(max_wait: int) -> tuple[NewsdeskClient, Counting]:
    settings = Settings.from_env(
        {}, key_prefix="unit", stance_scorer="lexicon", rate_limit_storage="memory://", max_wait=max_wait
    )
    app = create_app(settings, store=Store(fakeredis.FakeRedis(), "unit"), queue=ListQueue())
    transport = Counting(app)
    return NewsdeskClient("http://newsdesk.test", transport=transport), transport


def test_a_lower_bound_on_wait_is_learnt_from_the_service() -> None:
    client, transport = client_for(max_wait=1)
    article_id = client.submit(TEXT).id
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        client.wait(article_id, timeout=2.5)
    assert 2.5 <= time.monotonic() - started < 5
    # 3 refused once (422, "at most 1 seconds"), then held a second at a time: no burst of polls.
    assert transport.waits[1:3] == ["3", "1"]
    assert len(transport.waits) <= 6
    assert client.get(article_id, wait=30).status == "queued"  # the learnt bound, not a 422
    assert transport.waits[-1] == "1"


def test_a_fraction_of_a_second_still_waits() -> None:
    client, transport = client_for(max_wait=60)
    article_id = client.submit(TEXT).id
    with pytest.raises(TimeoutError):
        client.wait(article_id, timeout=0.5)
    assert transport.waits[1:] == ["1"]  # one long-poll of a second, not a loop of plain GETs


def test_a_service_that_holds_no_request_is_polled_once_a_second() -> None:
    client, transport = client_for(max_wait=0)
    article_id = client.submit(TEXT).id
    with pytest.raises(TimeoutError):
        client.wait(article_id, timeout=2.2)
    assert transport.waits[1:3] == ["3", None]  # refused, then plain GETs, a second apart
    assert len(transport.waits) <= 6


def test_waiting_rides_out_an_api_restart() -> None:
    client, transport = client_for(max_wait=1)
    article_id = client.submit(TEXT).id
    down = 2  # the next two requests find no API (a deploy)
    handle = transport.handle_request

    def restarting(request: httpx.Request) -> httpx.Response:
        nonlocal down
        if down:
            down -= 1
            raise httpx.ConnectError("connection refused", request=request)
        return handle(request)

    transport.handle_request = restarting  # type: ignore[method-assign]
    with pytest.raises(TimeoutError, match="still queued"):
        client.wait(article_id, timeout=3.5)
    assert down == 0
    assert transport.waits[-1] == "1"  # asked again after the refusals, and waited
    down = 1
    with pytest.raises(httpx.ConnectError):  # a single get is not retried: the caller decides
        client.get(article_id)
