"""The webhook delivery task: its attempts are the ones stored on the article, not Celery's retry count,
which starts again at 0 for a delivery the sweeper sends again; a time limit is a failed attempt."""

from __future__ import annotations

import http.server
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

import fakeredis
import pytest
from celery.exceptions import Retry, SoftTimeLimitExceeded

from newsdesk.settings import Settings
from newsdesk.store import ANALYSES, NewArticle, Store
from tests.lost_reply import LosingFirstReply
from workers import tasks
from workers.analysis.stance import LexiconScorer
from workers.pipeline import Analyzers

SECRET = "s3cret"


class Receiver:
    """A real HTTP server on loopback that answers 500 to everything, after `delay` seconds."""

    def __init__(self, delay: float = 0.0) -> None:
        self.attempts: list[str] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                receiver.attempts.append(self.headers["X-Newsdesk-Attempt"])
                time.sleep(delay)
                self.send_response(500)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Store:
    """The task's store: a fake Redis in place of the worker's connection."""
    store = Store(fakeredis.FakeRedis(), "unit")
    monkeypatch.setattr(tasks.runtime, "_store", store)
    return store


def configure(monkeypatch: pytest.MonkeyPatch, **values: Any) -> Settings:
    settings = Settings.from_env({}, webhook_secret=SECRET, webhook_allow_private=True, **values)
    monkeypatch.setattr(tasks, "settings", settings)
    return settings


def queued_webhook(store: Store, url: str) -> str:
    """A finished article whose webhook was claimed, as the analysis task leaves it."""
    article_id = store.create_article(NewArticle(text="Some words here.", callback_url=url)).article_id
    for name in ANALYSES:
        store.finish_analysis(article_id, name, result={"n": 1}, version="v1")
    assert store.move_webhook(article_id, "due", "queued")
    return article_id


@pytest.fixture
def failing_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


def test_a_delivery_sent_again_does_not_start_its_attempts_over(
    store: Store, failing_receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, webhook_max_attempts=3, webhook_backoff=0.1)
    article_id = queued_webhook(store, failing_receiver.url)
    # Each call runs the task as a fresh message does (request.retries is 0), as when the sweeper sends a
    # delivery again: the attempts go on from the stored count and end at the limit.
    for _ in range(2):
        with pytest.raises(Retry):
            tasks.webhook_task(article_id)
        assert store.webhook_state(article_id) == "queued"
    tasks.webhook_task(article_id)
    assert store.webhook_state(article_id) == "failed"
    assert failing_receiver.attempts == ["1", "2", "3"]


def test_a_soft_time_limit_is_a_failed_attempt_retried_later(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, webhook_max_attempts=2, webhook_timeout=10.0)
    receiver = Receiver(delay=3.0)

    # What Celery's pool does at the soft time limit: a signal whose handler raises in the task.
    def soft_time_limit(signum: int, frame: FrameType | None) -> None:
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGALRM, soft_time_limit)
    try:
        article_id = queued_webhook(store, receiver.url)
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(Retry):
            tasks.webhook_task(article_id)
        assert store.webhook_state(article_id) == "queued"
        error = store.redis.hget(f"unit:article:{article_id}", "webhook:error")
        assert error is not None
        assert b"time limit" in error
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        tasks.webhook_task(article_id)  # the last attempt: no retry
        assert store.webhook_state(article_id) == "failed"
        assert receiver.attempts == ["1", "2"]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        receiver.close()


def test_a_claim_whose_reply_was_lost_still_sends_the_delivery_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The analysis task claims the webhook (due to queued) and Redis applies it, but the reply is lost:
    the next try of the same claim finds it its own and sends the delivery, once."""
    settings = configure(monkeypatch)
    monkeypatch.setattr(tasks.runtime, "_analyzers", Analyzers(settings, store, scorer=LexiconScorer()))
    sent: list[str] = []
    monkeypatch.setattr(tasks, "enqueue_webhook", lambda app, article_id: sent.append(article_id))
    claim = LosingFirstReply(store.move_webhook)
    monkeypatch.setattr(store, "move_webhook", claim)
    article_id = store.create_article(
        NewArticle(text="Some words here.", callback_url="https://hooks.example.com/x")
    ).article_id
    tasks.analysis_task(article_id, list(ANALYSES))
    assert claim.calls == 2
    assert sent == [article_id]
    assert store.webhook_state(article_id) == "queued"
