"""Writes sent twice to a real Redis: once applied with the reply lost, then again by a retry.

A start counts an attempt. Sent again with the token of the first try (as `patiently` and redis-py's
own retry send it), it must return the first reply and count nothing more; otherwise an article is
given up after fewer real attempts than NEWSDESK_MAX_ATTEMPTS. A submission resent by redis-py must not
push its messages twice.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.connection

from newsdesk.metrics import ARTICLES_FINISHED, MetricsRecorder
from newsdesk.settings import Settings
from newsdesk.store import ANALYSES, NewArticle, QueuedMessage, Store, write_token
from tests.lost_reply import RUN_WRITES, LosingFirstReply, lose_first_replies
from workers.analysis.stance import LexiconScorer
from workers.pipeline import Analyzers, RunOutcome, patiently, run_analyses

pytestmark = pytest.mark.integration

WIRE = Path(__file__).resolve().parents[2] / "seeds" / "000_9e29d44066a107d1.txt"


@pytest.fixture
def store(live_settings: Settings) -> Iterator[Store]:
    """A store on the real Redis (the worker's own client settings) under a key prefix of its own."""
    settings = Settings.from_env(
        {}, redis_url=live_settings.redis_url, key_prefix=f"retried-{uuid.uuid4().hex[:8]}"
    )
    store = Store.from_settings(settings)
    yield store
    for key in store.redis.scan_iter(match=f"{settings.key_prefix}:*", count=1000):
        store.redis.delete(key)


def attempts(store: Store, article_id: str) -> dict[str, int]:
    article = store.get_article(article_id)
    assert article is not None
    return {name: state.attempts for name, state in article.analyses.items()}


def test_a_start_sent_again_with_its_token_counts_one_attempt(store: Store) -> None:
    article_id = store.create_article(NewArticle(text="A.")).article_id
    token = write_token()
    first, _ = store.start_analysis_and_read(article_id, "summary", token=token)
    assert first == ("queued", 1)
    again, article_again = store.start_analysis_and_read(article_id, "summary", token=token)
    assert again == first
    assert article_again == store.get_article(article_id)
    assert attempts(store, article_id)["summary"] == 1
    assert store.start_analysis(article_id, "summary") == ("running", 2)  # a new start still counts


def test_a_finish_and_start_sent_again_counts_the_next_attempt_once(store: Store) -> None:
    article_id = store.create_article(NewArticle(text="A.")).article_id
    store.start_analysis(article_id, "summary")
    token = write_token()
    replies = [
        store.finish_analysis_and_start(
            article_id, "summary", result={"text": "A."}, version="s1", next_name="stance", token=token
        )
        for _ in range(2)
    ]
    assert replies == [("running", ("queued", 1))] * 2
    assert attempts(store, article_id) == {"summary": 1, "stance": 1, "duplicates": 0}


def test_a_webhook_attempt_sent_again_is_counted_once(store: Store) -> None:
    article_id = store.create_article(NewArticle(text="A.", callback_url="https://h.example/x")).article_id
    for name in ANALYSES:
        store.finish_analysis(article_id, name, result={}, version="v")
    claim = write_token()
    assert [store.move_webhook(article_id, "due", "queued", token=claim) for _ in range(2)] == [True, True]
    attempt = write_token()
    assert [store.start_webhook(article_id, token=attempt) for _ in range(2)] == [("queued", 1)] * 2
    assert store.start_webhook(article_id) == ("queued", 2)


def test_an_article_stored_before_tokens_is_started_as_before(store: Store) -> None:
    article_id = store.create_article(NewArticle(text="A.")).article_id
    key = f"{store.prefix}:article:{article_id}"
    # What a release without tokens leaves: started twice, no record of a token.
    store.redis.hset(key, mapping={"status": "running", "summary:status": "running", "summary:attempts": "2"})
    token = write_token()
    replies = [store.start_analysis(article_id, "summary", token=token) for _ in range(2)]
    assert replies == [("running", 3)] * 2


def test_patiently_retrying_a_start_whose_reply_was_lost_counts_it_once(store: Store) -> None:
    article_id = store.create_article(NewArticle(text="A.")).article_id
    start = LosingFirstReply(store.start_analysis)
    token = write_token()
    assert patiently(lambda: start(article_id, "summary", token=token), within=5) == ("queued", 1)
    assert start.calls == 2  # applied, reply lost, tried again
    assert attempts(store, article_id)["summary"] == 1


def test_a_run_whose_writes_lose_their_replies_finishes_with_one_attempt_each(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one attempt allowed, each analysis's one real attempt must be enough, although every kind of
    write the run makes has its first reply lost after Redis applied it."""
    analyzers = Analyzers(Settings.from_env({}, stance_scorer="lexicon"), store, scorer=LexiconScorer())
    article_id = store.create_article(NewArticle(text=WIRE.read_text(encoding="utf-8"))).article_id
    lossy = lose_first_replies(store, RUN_WRITES, monkeypatch)
    names = ["summary", "duplicates", "stance"]
    assert run_analyses(store, analyzers, article_id, names, max_attempts=1, store_patience=5) == RunOutcome(
        "done", None
    )
    assert [wrapper.calls for wrapper in lossy.values()] == [2, 3, 2]
    assert attempts(store, article_id) == dict.fromkeys(ANALYSES, 1)
    assert store.redis.xlen(store.results_stream) == 1


def lose_next_script_reply(monkeypatch: pytest.MonkeyPatch, kind: type = list) -> list[Any]:
    """From now on, the first script reply (of type `kind`) this thread reads is read off the socket,
    and then the connection fails: redis-py's own retry (the store's client allows one) sends the same
    command again on a new connection. Returns the list the lost reply will be put in."""
    read_response = redis.connection.Connection.read_response
    this_thread = threading.get_ident()  # not the metrics flusher's
    lost: list[Any] = []

    def losing(self: redis.connection.Connection, *args: Any, **kwargs: Any) -> Any:
        reply = read_response(self, *args, **kwargs)
        if threading.get_ident() == this_thread and isinstance(reply, kind) and not lost:
            lost.append(reply)
            raise redis.ConnectionError("Connection closed by server.")
        return reply

    monkeypatch.setattr(redis.connection.Connection, "read_response", losing)
    return lost


def test_a_reply_lost_on_the_socket_is_sent_again_by_redis_py_and_counted_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No wrapper here: the store's own call loses the reply, and redis-py sends the EVALSHA again."""
    article_id = store.create_article(NewArticle(text="A.")).article_id
    store.start_analysis(article_id, "stance")  # loads the script: the EVALSHA below needs no SCRIPT LOAD
    lost = lose_next_script_reply(monkeypatch)
    assert store.start_analysis(article_id, "summary") == ("queued", 1)
    assert lost == [[b"queued", 1]]  # applied, its reply lost; the reply above is the resent command's
    assert attempts(store, article_id)["summary"] == 1


def test_a_last_finish_whose_reply_was_lost_counts_the_article_finished_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the resent finish's reply comes back: it must still say that the finish (its first try) made
    the article done, or the article is never counted finished."""
    monkeypatch.setattr("newsdesk.metrics._start_flusher", lambda: None)  # only this thread flushes
    article_id = store.create_article(NewArticle(text="A.")).article_id
    for name in ANALYSES[:-1]:
        store.finish_analysis(article_id, name, result={}, version="v")
    lost = lose_next_script_reply(monkeypatch, kind=object)
    assert store.finish_analysis(article_id, ANALYSES[-1], result={}, version="v") == "done"
    assert len(lost) == 1  # applied, its reply lost; the answer above is the resent command's
    assert store.finish_analysis(article_id, ANALYSES[-1], result={}, version="v") == "done"  # a new one
    assert store.metrics.flush()
    counters, _ = store.metrics.read()
    assert counters[ARTICLES_FINISHED.name] == {("done",): 1}
    assert store.redis.xlen(store.results_stream) == 1


def test_a_submission_whose_reply_was_lost_is_stored_and_queued_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py sends a lost creation again too: it must neither push the article's messages twice nor
    count the article against the backlog bound it already passed."""
    store.create_article(NewArticle(text="Loads the script."))

    def messages(article_id: str) -> list[QueuedMessage]:
        return [QueuedMessage(f"{store.prefix}:q", article_id, article_id)]

    lost = lose_next_script_reply(monkeypatch)
    submitted = store.create_article(NewArticle(text="A."), messages=messages, max_backlog=2)
    assert len(lost) == 1
    assert submitted.created
    assert store.redis.lrange(f"{store.prefix}:q", 0, -1) == [submitted.article_id.encode()]
    assert store.pending_count() == 2
    lost = lose_next_script_reply(monkeypatch)
    batch = store.create_batch("", [NewArticle(text="B.")], messages=messages, max_backlog=3)
    assert len(lost) == 1
    assert batch.created
    assert store.redis.llen(f"{store.prefix}:q") == 2
    assert store.pending_count() == 3


def test_a_delete_whose_reply_was_lost_says_it_deleted(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The resent DELETE finds the article gone: by its own first try, so it is no 404."""
    kept, deleted = (store.create_article(NewArticle(text=t)).article_id for t in ("A.", "B."))
    store.delete_article(kept + "-none", "")  # loads the script: the EVALSHA below needs no SCRIPT LOAD
    lost = lose_next_script_reply(monkeypatch, kind=int)
    assert store.delete_article(deleted, "")
    assert lost == [1]  # applied, its reply lost; the answer above is the resent command's
    assert store.get_article(deleted) is None
    assert store.get_article(kept) is not None
    assert not store.delete_article(deleted, "")  # a new delete of the same article: nothing there


def test_metrics_whose_reply_was_lost_are_counted_once(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """redis-py sends the flush again on a new connection: its number, already applied, keeps its sums
    from counting twice."""
    monkeypatch.setattr("newsdesk.metrics._start_flusher", lambda: None)  # only this thread flushes
    recorder = MetricsRecorder(store.redis, store.prefix)
    recorder.record(ARTICLES_FINISHED.inc("done"))
    assert recorder.flush()  # loads the script: the EVALSHA below needs no SCRIPT LOAD
    recorder.record(ARTICLES_FINISHED.inc("done", amount=2))
    lost = lose_next_script_reply(monkeypatch, kind=int)
    assert recorder.flush()
    assert lost == [1]  # applied, its reply lost; the resent script found its receipt
    counters, _ = recorder.read()
    assert counters[ARTICLES_FINISHED.name][("done",)] == 3


def test_a_flush_that_failed_after_it_was_applied_is_not_applied_again(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flush that failed is sent again with its own number before the newer sums: the receipt shows
    that Redis had applied it, so only the newer sums are added."""
    monkeypatch.setattr("newsdesk.metrics._start_flusher", lambda: None)  # only this thread flushes
    recorder = MetricsRecorder(store.redis, store.prefix)
    monkeypatch.setattr(recorder, "_write", LosingFirstReply(recorder._write))
    recorder.record(ARTICLES_FINISHED.inc("failed", amount=5))
    assert not recorder.flush()  # applied, but the recorder could not know
    recorder.record(ARTICLES_FINISHED.inc("failed"))
    assert recorder.flush()
    counters, _ = recorder.read()
    assert counters[ARTICLES_FINISHED.name][("failed",)] == 6
