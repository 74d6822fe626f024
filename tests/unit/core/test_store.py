"""The Redis data layer, over fakeredis (which runs the same Lua scripts)."""

from __future__ import annotations

import time

import pytest

from newsdesk.store import (
    ANALYSES,
    BacklogFull,
    IdempotencyConflict,
    NewArticle,
    QueuedMessage,
    Rejected,
    Seed,
    Store,
    write_token,
)


def _sketch(text: str) -> bytes:
    return text[:8].encode()


def test_create_and_read_article(store: Store) -> None:
    submitted = store.create_article(
        NewArticle(text="Hello world.", title="T", options={"summary_sentences": 2})
    )
    assert submitted.created
    article = store.get_article(submitted.article_id)
    assert article is not None
    assert article.status == "queued"
    assert article.text == "Hello world."
    assert article.metadata == {"title": "T"}
    assert article.options == {"summary_sentences": 2}
    assert {name: state.status for name, state in article.analyses.items()} == dict.fromkeys(
        ANALYSES, "queued"
    )


def test_unknown_article_is_none(store: Store) -> None:
    assert store.get_article("nope") is None
    assert store.start_analysis("nope", "summary") is None
    assert store.finish_analysis("nope", "summary", result={}, version="v") is None
    assert store.get_article("nope") is None  # finishing did not create it


def test_idempotency_key_returns_the_same_article(store: Store) -> None:
    first = store.create_article(NewArticle(text="A."), idempotency_key="k1", digest="d")
    again = store.create_article(NewArticle(text="A."), idempotency_key="k1", digest="d")
    assert again.article_id == first.article_id
    assert not again.created
    other = store.create_article(NewArticle(text="A."), idempotency_key="k2", digest="d")
    assert other.article_id != first.article_id
    assert store.list_article_ids() == [other.article_id, first.article_id]


def test_idempotency_key_with_another_body_conflicts(store: Store) -> None:
    first = store.create_article(NewArticle(text="A."), idempotency_key="k", digest="d1")
    with pytest.raises(IdempotencyConflict) as raised:
        store.create_article(NewArticle(text="B."), idempotency_key="k", digest="d2")
    assert raised.value.article_id == first.article_id


def test_the_backlog_bound_refuses_a_new_article_and_stores_nothing(store: Store) -> None:
    first = store.create_article(NewArticle(text="A."), idempotency_key="k", digest="d", max_backlog=2)
    store.create_article(NewArticle(text="B."), max_backlog=2)
    with pytest.raises(BacklogFull) as raised:
        store.create_article(NewArticle(text="C."), max_backlog=2)
    assert raised.value.waiting == 2
    assert len(store.list_article_ids()) == 2
    assert store.pending_count() == 2
    # A retry of a stored article stores nothing: it gets its article back, full backlog or not.
    again = store.create_article(NewArticle(text="A."), idempotency_key="k", digest="d", max_backlog=2)
    assert (again.article_id, again.created) == (first.article_id, False)
    for name in ANALYSES:  # one article finishes: room for one more
        store.finish_analysis(first.article_id, name, result={}, version="v")
    assert store.create_article(NewArticle(text="C."), max_backlog=2).created


def test_the_backlog_bound_refuses_a_whole_batch(store: Store) -> None:
    store.create_article(NewArticle(text="A."))
    items: list[NewArticle | Rejected] = [
        NewArticle(text="B."),
        Rejected(1, {"status": 422}),
        NewArticle(text="C."),
        NewArticle(text="D."),
    ]
    with pytest.raises(BacklogFull) as raised:
        store.create_batch("", items, max_backlog=3)  # 1 waiting + 3 accepted
    assert raised.value.waiting == 1
    assert len(store.list_article_ids()) == 1
    assert list(store.redis.scan_iter(match="unit:batch:*")) == []
    assert store.create_batch("", items[:3], max_backlog=3).created  # the rejected item takes no room
    assert store.pending_count() == 3


def test_only_the_latest_webhook_attempt_or_a_delivery_is_recorded(store: Store) -> None:
    article_id = store.create_article(
        NewArticle(text="A.", callback_url="https://hooks.example.com/")
    ).article_id
    for name in ANALYSES:
        store.finish_analysis(article_id, name, result={}, version="v1")
    assert store.move_webhook(article_id, "due", "queued")
    assert store.start_webhook(article_id) == ("queued", 1)
    assert store.start_webhook(article_id) == ("queued", 2)  # a second message, at once
    assert not store.record_webhook(article_id, "queued", 1, "HTTP 500")  # attempt 2 is under way
    assert store.record_webhook(article_id, "failed", 2, "HTTP 500")
    assert not store.record_webhook(article_id, "queued", 2, "HTTP 500")  # not reopened
    assert store.record_webhook(article_id, "delivered", 1)  # attempt 1 got through after all
    assert not store.record_webhook(article_id, "failed", 2, "late")
    assert store.webhook_state(article_id) == "delivered"
    assert store.redis.hget(f"unit:article:{article_id}", "webhook:attempts") == b"2"  # both began


def test_a_batch_that_accepted_nothing_expires_from_its_creation(store: Store) -> None:
    batch = store.create_batch("", [Rejected(0, {"status": 422})])  # no finish will ever set it
    assert 0 < store.redis.ttl(f"unit:batch:{batch.batch_id}") <= store.result_ttl


def _two_lists(article_id: str) -> list[QueuedMessage]:
    return [
        QueuedMessage("q:fast", f"fast {article_id}", "t1"),
        QueuedMessage("q:slow", f"slow {article_id}", "t2"),
    ]


def _queued(store: Store, key: str) -> list[str]:
    return [raw.decode() for raw in reversed(store.redis.lrange(key, 0, -1))]  # type: ignore[union-attr]


def test_an_article_and_its_messages_are_stored_in_one_step(store: Store) -> None:
    first = store.create_article(NewArticle(text="A."), idempotency_key="k", digest="d", messages=_two_lists)
    second = store.create_article(NewArticle(text="B."), messages=_two_lists)
    assert first.created
    assert second.created
    assert [m.payload for m in first.messages] == [f"fast {first.article_id}", f"slow {first.article_id}"]
    # Oldest first, as a worker's BRPOP takes them from the list the store LPUSHes onto.
    assert _queued(store, "q:fast") == [f"fast {first.article_id}", f"fast {second.article_id}"]
    assert _queued(store, "q:slow") == [f"slow {first.article_id}", f"slow {second.article_id}"]

    # A replay pushes nothing, nor does an article the backlog bound refuses.
    replay = store.create_article(NewArticle(text="A."), idempotency_key="k", digest="d", messages=_two_lists)
    assert (replay.article_id, replay.created, replay.messages) == (first.article_id, False, ())
    with pytest.raises(BacklogFull):
        store.create_article(NewArticle(text="C."), max_backlog=2, messages=_two_lists)
    assert len(_queued(store, "q:fast")) == len(_queued(store, "q:slow")) == 2


def test_a_batch_and_its_accepted_articles_messages_are_stored_in_one_step(store: Store) -> None:
    items: list[NewArticle | Rejected] = [
        NewArticle(text="A."),
        Rejected(1, {"status": 422}),
        NewArticle(text="C."),
    ]
    batch = store.create_batch("", items, idempotency_key="k", digest="d", messages=_two_lists)
    stored = store.get_batch(batch.batch_id)
    assert stored is not None
    assert len(stored.article_ids) == 2
    assert _queued(store, "q:fast") == [f"fast {article_id}" for article_id in stored.article_ids]
    assert _queued(store, "q:slow") == [f"slow {article_id}" for article_id in stored.article_ids]
    assert len(batch.messages) == 4

    replay = store.create_batch("", items, idempotency_key="k", digest="d", messages=_two_lists)
    assert (replay.batch_id, replay.created, replay.messages) == (batch.batch_id, False, ())
    with pytest.raises(BacklogFull):
        store.create_batch("", items, max_backlog=3, messages=_two_lists)
    assert len(_queued(store, "q:fast")) == 2


def test_a_batch_whose_articles_want_different_lists_is_refused_before_anything_is_stored(
    store: Store,
) -> None:
    lists = iter([["q:a"], ["q:b"]])

    def messages(article_id: str) -> list[QueuedMessage]:
        return [QueuedMessage(key, article_id, "t") for key in next(lists)]

    with pytest.raises(ValueError, match="same lists"):
        store.create_batch("", [NewArticle(text="A."), NewArticle(text="B.")], messages=messages)
    assert store.list_article_ids() == []
    assert store.redis.exists("q:a", "q:b") == 0


def test_status_follows_the_analyses(store: Store) -> None:
    article_id = store.create_article(NewArticle(text="A.")).article_id
    assert store.start_analysis(article_id, "summary") == ("queued", 1)
    assert store.get_article(article_id).status == "running"  # type: ignore[union-attr]
    assert store.finish_analysis(article_id, "summary", result={"text": "A."}, version="s1") == "running"
    store.start_analysis(article_id, "stance")
    assert store.finish_analysis(article_id, "stance", result={"targets": {}}, version="t1") == "running"
    store.start_analysis(article_id, "duplicates")
    assert store.finish_analysis(article_id, "duplicates", result={"matches": []}, version="d1") == "done"
    article = store.get_article(article_id)
    assert article is not None
    assert article.status == "done"
    assert article.finished_at
    assert article.analyses["summary"].result == {"text": "A."}
    assert article.analyses["summary"].version == "s1"
    assert article.analyses["summary"].attempts == 1


def test_one_failed_analysis_fails_the_article_but_keeps_the_others(store: Store) -> None:
    article_id = store.create_article(NewArticle(text="A.")).article_id
    store.finish_analysis(article_id, "summary", result={"text": "A."}, version="s1")
    store.finish_analysis(
        article_id, "stance", result=None, version="", error="stance analysis failed (ValueError)"
    )
    assert store.finish_analysis(article_id, "duplicates", result={"matches": []}, version="d1") == "failed"
    article = store.get_article(article_id)
    assert article is not None
    assert article.analyses["stance"].error == "stance analysis failed (ValueError)"
    assert article.analyses["summary"].status == "done"


def test_redelivered_result_overwrites(store: Store) -> None:
    article_id = store.create_article(NewArticle(text="A.")).article_id
    store.finish_analysis(article_id, "summary", result={"text": "first"}, version="s1")
    assert store.start_analysis(article_id, "summary") == ("done", 1)
    store.finish_analysis(article_id, "summary", result={"text": "second"}, version="s1")
    article = store.get_article(article_id)
    assert article is not None
    assert article.analyses["summary"].result == {"text": "second"}
    assert article.analyses["summary"].status == "done"  # starting again did not reset a finished analysis


def test_a_start_sent_again_with_its_token_counts_one_attempt(store: Store) -> None:
    article_id = store.create_article(NewArticle(text="A.")).article_id
    token = write_token()
    assert store.start_analysis(article_id, "summary", token=token) == ("queued", 1)
    # Its reply was lost and the caller sends it again: the same reply, no second attempt.
    assert store.start_analysis(article_id, "summary", token=token) == ("queued", 1)
    started, article = store.start_analysis_and_read(article_id, "summary", token=token)
    assert started == ("queued", 1)
    assert article is not None
    assert article.analyses["summary"].attempts == 1
    assert store.start_analysis(article_id, "summary") == ("running", 2)  # another start counts


def test_a_finish_sent_again_with_its_token_stores_nothing_more(store: Store) -> None:
    article_id = store.create_article(NewArticle(text="A.", callback_url="https://h.example/x")).article_id
    store.start_analysis(article_id, "summary")
    token = write_token()
    first = store.finish_analysis_and_start(
        article_id, "summary", result={"text": "A."}, version="s1", next_name="stance", token=token
    )
    assert first == ("running", ("queued", 1))
    before = store.get_article(article_id)
    time.sleep(0.01)  # a write applied again would stamp a later time
    again = store.finish_analysis_and_start(
        article_id, "summary", result={"text": "A."}, version="s1", next_name="stance", token=token
    )
    assert again == first
    assert store.get_article(article_id) == before  # stance's attempt counted once, nothing re-stamped
    store.finish_analysis(article_id, "stance", result={"targets": {}}, version="t1")
    last = write_token()
    for _ in range(2):
        assert store.finish_analysis(article_id, "duplicates", result={}, version="d1", token=last) == "done"
    assert store.redis.xlen(store.results_stream) == 1
    assert store.webhook_state(article_id) == "due"


def test_webhook_writes_sent_again_with_their_token_apply_once(store: Store) -> None:
    article_id = store.create_article(NewArticle(text="A.", callback_url="https://h.example/x")).article_id
    for name in ANALYSES:
        store.finish_analysis(article_id, name, result={}, version="v")
    claim = write_token()
    assert store.move_webhook(article_id, "due", "queued", token=claim)
    assert store.move_webhook(article_id, "due", "queued", token=claim)  # still this caller's claim
    assert not store.move_webhook(article_id, "due", "queued")  # another caller finds it taken
    attempt = write_token()
    assert store.start_webhook(article_id, token=attempt) == ("queued", 1)
    assert store.start_webhook(article_id, token=attempt) == ("queued", 1)
    assert store.start_webhook(article_id) == ("queued", 2)  # a new attempt counts
    # A claim given back (its send failed) is claimed afresh by the next try of the same claim.
    assert store.move_webhook(article_id, "queued", "due")
    assert store.move_webhook(article_id, "due", "queued", token=claim)
    assert store.webhook_state(article_id) == "queued"
    store.record_webhook(article_id, "delivered", 2)
    assert not store.move_webhook(article_id, "due", "queued", token=claim)  # it has moved on since


def test_records_written_before_tokens_are_written_as_before(store: Store) -> None:
    article_id = store.create_article(NewArticle(text="A.", callback_url="https://h.example/x")).article_id
    # As a release without tokens leaves an article: summary started twice, a webhook attempt made.
    store.redis.hset(
        f"unit:article:{article_id}",
        mapping={"status": "running", "summary:status": "running", "summary:attempts": "2"},
    )
    token = write_token()
    assert store.start_analysis(article_id, "summary", token=token) == ("running", 3)
    assert store.start_analysis(article_id, "summary", token=token) == ("running", 3)
    for name in ANALYSES:
        store.finish_analysis(article_id, name, result={}, version="v")
    store.redis.hset(f"unit:article:{article_id}", mapping={"webhook": "queued", "webhook:attempts": "1"})
    assert store.start_webhook(article_id, token=token) == ("queued", 2)
    assert store.start_webhook(article_id, token=token) == ("queued", 2)


def test_a_write_token_cannot_hold_the_separator(store: Store) -> None:
    article_id = store.create_article(NewArticle(text="A.")).article_id
    for token in ("", "a|b"):
        with pytest.raises(ValueError, match="write token"):
            store.start_analysis(article_id, "summary", token=token)


def test_seeds_are_stored_listed_and_logged(store: Store) -> None:
    seeds = [Seed("b", "Bee text."), Seed("a", "Ay text.", title="A"), Seed("c", "See text.")]
    assert store.add_seeds(seeds, _sketch) == (3, 0)
    assert store.add_seeds(seeds, _sketch) == (0, 3)  # same texts: nothing to do
    assert store.add_seeds([Seed("a", "Changed text.")], _sketch) == (1, 0)
    assert [s.id for s in store.list_seeds()] == ["a", "b", "c"]
    assert [s.id for s in store.list_seeds(after="a", limit=1)] == ["b"]
    assert store.count_seeds() == 3
    seed = store.get_seed("a")
    assert seed is not None
    assert seed.text == "Changed text."
    assert seed.title is None
    assert store.seed_texts(["a", "missing", "c"]) == {"a": "Changed text.", "c": "See text."}
    position, added = store.seed_sketches_since(0)
    assert position == 4
    assert added[-1] == ("a", b"Changed ")
    assert store.seed_sketches_since(position) == (4, [])


def test_worker_heartbeats(store: Store) -> None:
    store.worker_heartbeat("w1")
    assert store.live_workers(10) == ["w1"]
    store.worker_gone("w1")
    assert store.live_workers(10) == []
