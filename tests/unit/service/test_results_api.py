"""Batches, long-polling, listing, deletion and retention through the real WSGI app, over fakeredis."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import fakeredis
import pytest
from flask import Flask
from flask.testing import FlaskClient

from newsdesk.settings import Settings
from newsdesk.store import ANALYSES, NewArticle, Store
from service.app import create_app
from service.auth import hash_key
from service.long_polls import STOPPING, LongPolls
from service.queue import ListQueue
from tests.unit.service.test_articles_api import assert_problem

TEXT = "Russia and the United States met at the UN on Monday. Talks went well."
STANCE = {
    "targets": {
        target: {"label": label, "score": 0.0, "confidence": 0.9, "mentions": 1, "evidence": []}
        for target, label in (("us", "positive"), ("russia", "negative"), ("un", "neutral"))
    }
}


def finish(store: Store, article_id: str, *, duplicate: bool = False, fail: str | None = None) -> str | None:
    results: dict[str, dict[str, Any]] = {
        "summary": {"sentences": [], "text": ""},
        "stance": STANCE,
        "duplicates": {"is_duplicate": duplicate, "matches": [], "seeds_checked": 0},
    }
    status = None
    for name in ANALYSES:
        store.start_analysis(article_id, name)
        error = fail if name == "stance" else None
        result = None if error else results[name]
        status = store.finish_analysis(article_id, name, result=result, version="v1", error=error)
    return status


def submit(client: FlaskClient, **extra: Any) -> str:
    response = client.post("/v1/articles", json={"text": TEXT, **extra})
    assert response.status_code == 202, response.get_data(as_text=True)
    return str(response.get_json()["id"])


# batches
def test_batch_accepts_good_items_and_rejects_bad_ones_with_index_and_reason(
    client: FlaskClient, store: Store, queue: ListQueue
) -> None:
    articles = [
        {"text": TEXT, "title": "one"},
        {"text": ""},
        {"text": TEXT, "options": {"summary_sentences": 99}},
        {"text": TEXT, "surprise": 1},
        {"text": TEXT, "title": "five"},
    ]
    response = client.post("/v1/batches", json={"articles": articles})
    assert response.status_code == 202, response.get_data(as_text=True)
    batch = response.get_json()
    assert response.headers["Location"] == f"/v1/batches/{batch['id']}"
    assert (batch["total"], batch["accepted"], batch["rejected"]) == (5, 2, 3)
    assert [item["status"] for item in batch["items"]] == [
        "queued",
        "rejected",
        "rejected",
        "rejected",
        "queued",
    ]
    rejected = {item["index"]: item["problem"] for item in batch["items"] if item["status"] == "rejected"}
    assert rejected[1]["status"] == 422
    assert rejected[1]["errors"][0]["field"] == "text"
    assert rejected[2]["errors"] == [
        {"field": "options.summary_sentences", "message": rejected[2]["errors"][0]["message"]}
    ]
    assert rejected[3]["errors"][0]["field"] == "surprise"
    ids = [item["id"] for item in batch["items"] if "id" in item]
    assert queue.article_ids(store.redis) == ids
    stored = [store.get_article(article_id) for article_id in ids]
    assert [a.metadata["title"] for a in stored if a] == ["one", "five"]
    assert all(a is not None and a.batch == batch["id"] for a in stored)
    assert batch["counts"] == {"queued": 2, "running": 0, "done": 0, "failed": 0, "gone": 0}
    assert batch["status"] == "running"


def test_an_item_that_is_not_an_object_is_rejected_alone(client: FlaskClient, store: Store) -> None:
    articles = [{"text": TEXT}, None, "text", 5, []]
    response = client.post("/v1/batches", json={"articles": articles})
    assert response.status_code == 202, response.get_data(as_text=True)
    batch = response.get_json()
    assert [item["status"] for item in batch["items"]] == ["queued"] + ["rejected"] * 4
    assert {item["problem"]["errors"][0]["field"] for item in batch["items"][1:]} == {"_schema"}
    assert len(store.list_article_ids()) == 1


def test_batch_over_the_configured_limit_is_413_and_stores_nothing(
    settings: Settings, store: Store, queue: ListQueue
) -> None:
    limited = create_app(
        Settings.from_env({}, **{**settings.__dict__, "max_batch": 3}), store=store, queue=queue
    )
    client = limited.test_client()
    response = client.post("/v1/batches", json={"articles": [{"text": TEXT}] * 4})
    problem = assert_problem(response, 413, "batch-too-large")
    assert problem["max_batch"] == 3
    assert "NEWSDESK_MAX_BATCH" in problem["detail"]
    assert store.list_article_ids() == []
    assert client.post("/v1/batches", json={"articles": [{"text": TEXT}] * 3}).status_code == 202


def test_batch_with_no_valid_item_is_422_with_each_reason(client: FlaskClient, store: Store) -> None:
    response = client.post("/v1/batches", json={"articles": [{"text": ""}, {"title": "no text"}]})
    problem = assert_problem(response, 422, "validation-error")
    assert [item["index"] for item in problem["items"]] == [0, 1]
    assert store.list_article_ids() == []
    assert_problem(client.post("/v1/batches", json={"articles": []}), 422, "validation-error")
    assert_problem(client.post("/v1/batches", json={"articles": ["text"]}), 422, "validation-error")


def test_batch_text_over_the_limit_is_rejected_per_item(store: Store, queue: ListQueue) -> None:
    settings = Settings.from_env({}, key_prefix="unit", rate_limit="off", max_text_chars=100)
    client = create_app(settings, store=store, queue=queue).test_client()
    batch = client.post("/v1/batches", json={"articles": [{"text": TEXT}, {"text": "word " * 50}]}).get_json()
    assert [item["status"] for item in batch["items"]] == ["queued", "rejected"]
    assert batch["items"][1]["problem"]["errors"][0]["field"] == "text"


def test_batch_idempotency_key_replays_the_batch(client: FlaskClient, store: Store, queue: ListQueue) -> None:
    body = {"articles": [{"text": TEXT}, {"text": TEXT, "title": "2"}]}
    first = client.post("/v1/batches", json=body, headers={"Idempotency-Key": "batch-1"})
    again = client.post("/v1/batches", json=body, headers={"Idempotency-Key": "batch-1"})
    assert first.status_code == again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == first.get_json()["id"]
    assert len(queue.article_ids(store.redis)) == 2
    other = client.post(
        "/v1/batches", json={"articles": [{"text": TEXT}]}, headers={"Idempotency-Key": "batch-1"}
    )
    assert_problem(other, 422, "idempotency-key-reused")


def test_batch_respects_the_backlog_bound(store: Store, queue: ListQueue) -> None:
    settings = Settings.from_env({}, key_prefix="unit", rate_limit="off", max_backlog=3)
    client = create_app(settings, store=store, queue=queue).test_client()
    submit(client)
    response = client.post("/v1/batches", json={"articles": [{"text": TEXT}] * 3})
    assert_problem(response, 503, "overloaded")
    assert len(store.list_article_ids()) == 1
    assert client.post("/v1/batches", json={"articles": [{"text": TEXT}] * 2}).status_code == 202


def test_batch_items_are_paginated_and_counted(client: FlaskClient, store: Store) -> None:
    articles = [{"text": TEXT, "title": str(i)} for i in range(7)]
    articles[3] = {"text": ""}
    batch = client.post("/v1/batches", json={"articles": articles}).get_json()
    ids = [item.get("id") for item in batch["items"]]
    finish(store, str(ids[0]))
    finish(store, str(ids[1]), fail="boom")
    client.delete(f"/v1/articles/{ids[2]}")
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = f"?limit=3&cursor={cursor}" if cursor else "?limit=3"
        page = client.get(f"/v1/batches/{batch['id']}{query}").get_json()
        seen.extend(page["items"])
        cursor = page["next"]
        if cursor is None:
            break
    assert [item["index"] for item in seen] == list(range(7))
    assert [item["status"] for item in seen] == [
        "done", "failed", "gone", "rejected", "queued", "queued", "queued"
    ]  # fmt: skip
    assert page["counts"] == {"queued": 3, "running": 0, "done": 1, "failed": 1, "gone": 1}
    for cursor in ("abc", "%C2%B2", "9223372036854775808"):  # "²" is a digit to Python
        assert_problem(client.get(f"/v1/batches/{batch['id']}?cursor={cursor}"), 400, "invalid-cursor")
    assert_problem(client.get("/v1/batches/nope"), 404, "batch-not-found")
    # Another key of the batch's (its item list), not a batch: never spliced into a key.
    assert_problem(client.get(f"/v1/batches/{batch['id']}:items"), 404, "batch-not-found")


def test_batches_are_owner_scoped(store: Store, queue: ListQueue) -> None:
    settings = Settings.from_env(
        {}, key_prefix="unit", rate_limit="off", api_keys=f"a:{hash_key('key-a')},b:{hash_key('key-b')}"
    )
    client = create_app(settings, store=store, queue=queue).test_client()
    as_a = {"Authorization": "Bearer key-a"}
    as_b = {"Authorization": "Bearer key-b"}
    batch = client.post("/v1/batches", json={"articles": [{"text": TEXT}]}, headers=as_a).get_json()
    assert client.get(f"/v1/batches/{batch['id']}", headers=as_a).status_code == 200
    assert_problem(client.get(f"/v1/batches/{batch['id']}", headers=as_b), 404, "batch-not-found")
    article_id = batch["items"][0]["id"]
    assert_problem(client.delete(f"/v1/articles/{article_id}", headers=as_b), 404, "article-not-found")
    assert client.get("/v1/articles", headers=as_b).get_json()["items"] == []
    assert [i["id"] for i in client.get("/v1/articles", headers=as_a).get_json()["items"]] == [article_id]


# long-polling
def test_wait_returns_as_soon_as_the_article_finishes(client: FlaskClient, store: Store) -> None:
    article_id = submit(client)
    finisher = threading.Timer(0.3, finish, args=(store, article_id))
    started = time.monotonic()
    finisher.start()
    response = client.get(f"/v1/articles/{article_id}?wait=10")
    elapsed = time.monotonic() - started
    finisher.join()
    assert response.get_json()["status"] == "done"
    assert "Retry-After" not in response.headers
    assert 0.25 < elapsed < 5  # woken by the finish, not by the end of the wait


def test_wait_ends_after_the_wait_with_the_current_state(client: FlaskClient) -> None:
    article_id = submit(client)
    started = time.monotonic()
    response = client.get(f"/v1/articles/{article_id}?wait=1")
    assert time.monotonic() - started >= 0.9
    assert response.get_json()["status"] == "queued"
    assert response.headers["Retry-After"] == "1"


def test_wait_is_bounded_and_validated(client: FlaskClient) -> None:
    article_id = submit(client)
    problem = assert_problem(client.get(f"/v1/articles/{article_id}?wait=61"), 422, "validation-error")
    assert problem["errors"][0]["field"] == "wait"
    assert_problem(client.get(f"/v1/articles/{article_id}?wait=-1"), 422, "validation-error")
    assert_problem(client.get(f"/v1/articles/{article_id}?wait=soon"), 422, "validation-error")
    assert_problem(client.get("/v1/articles/nope?wait=5"), 404, "article-not-found")


def test_batch_wait_returns_when_every_article_finished(client: FlaskClient, store: Store) -> None:
    batch = client.post("/v1/batches", json={"articles": [{"text": TEXT}, {"text": TEXT}]}).get_json()
    ids = [item["id"] for item in batch["items"]]
    finish(store, ids[0])
    finisher = threading.Timer(0.3, finish, args=(store, ids[1]))
    started = time.monotonic()
    finisher.start()
    view = client.get(f"/v1/batches/{batch['id']}?wait=10").get_json()
    finisher.join()
    assert time.monotonic() - started < 5
    assert view["status"] == "finished"
    assert view["counts"]["done"] == 2


def test_long_polls_beyond_the_bound_answer_at_once(
    settings: Settings, store: Store, queue: ListQueue
) -> None:
    client = create_app(settings, store=store, queue=queue, long_polls=LongPolls(1)).test_client()
    article_id = submit(client)
    waiting = threading.Thread(target=lambda: client.get(f"/v1/articles/{article_id}?wait=3"))
    waiting.start()
    time.sleep(0.3)  # it holds the one slot
    started = time.monotonic()
    response = client.get(f"/v1/articles/{article_id}?wait=3")
    assert time.monotonic() - started < 1  # as a plain poll
    assert response.get_json()["status"] == "queued"
    assert response.headers["Retry-After"] == "1"
    waiting.join()
    started = time.monotonic()
    client.get(f"/v1/articles/{article_id}?wait=1")  # the slot is free again: it waits
    assert time.monotonic() - started >= 0.9


def test_a_stopping_process_ends_its_long_polls(client: FlaskClient) -> None:
    article_id = submit(client)
    batch = client.post("/v1/batches", json={"articles": [{"text": TEXT}]}).get_json()
    stopper = threading.Timer(0.3, STOPPING.set)
    started = time.monotonic()
    stopper.start()
    try:
        response = client.get(f"/v1/articles/{article_id}?wait=10")
        assert time.monotonic() - started < 2  # not the whole wait
        assert response.get_json()["status"] == "queued"
        assert response.headers["Retry-After"] == "1"
        started = time.monotonic()
        assert client.get(f"/v1/batches/{batch['id']}?wait=10").get_json()["status"] == "running"
        assert time.monotonic() - started < 1  # a stopping process starts no wait
    finally:
        stopper.join()
        STOPPING.clear()


def test_an_unfinished_batch_says_when_to_come_back(client: FlaskClient, store: Store) -> None:
    batch = client.post("/v1/batches", json={"articles": [{"text": TEXT}]}).get_json()
    waited = client.get(f"/v1/batches/{batch['id']}?wait=1")
    assert waited.get_json()["status"] == "running"
    assert waited.headers["Retry-After"] == "1"
    finish(store, batch["items"][0]["id"])
    assert "Retry-After" not in client.get(f"/v1/batches/{batch['id']}").headers


def test_a_wait_ends_when_its_article_is_deleted(client: FlaskClient) -> None:
    article_id = submit(client)
    deleter = threading.Timer(0.3, lambda: client.delete(f"/v1/articles/{article_id}"))
    started = time.monotonic()
    deleter.start()
    response = client.get(f"/v1/articles/{article_id}?wait=10")
    deleter.join()
    assert_problem(response, 404, "article-not-found")
    assert time.monotonic() - started < 5  # woken by the delete, not by the end of the wait


def test_a_batch_outlives_the_result_ttl_while_its_articles_are_unfinished(
    client: FlaskClient, store: Store, fake_redis: fakeredis.FakeRedis
) -> None:
    batch = client.post("/v1/batches", json={"articles": [{"text": TEXT}, {"text": TEXT}]}).get_json()
    key = f"unit:batch:{batch['id']}"
    assert fake_redis.ttl(key) == fake_redis.ttl(f"{key}:items") == -1  # however long the queue takes
    finish(store, batch["items"][0]["id"])
    assert fake_redis.ttl(key) == fake_redis.ttl(f"{key}:items") == -1  # one article is still unfinished
    finish(store, batch["items"][1]["id"])
    assert Settings.result_ttl - 5 < fake_redis.ttl(key) <= Settings.result_ttl
    assert Settings.result_ttl - 5 < fake_redis.ttl(f"{key}:items") <= Settings.result_ttl


def test_a_batch_whose_articles_were_all_deleted_unfinished_still_expires(
    client: FlaskClient, fake_redis: fakeredis.FakeRedis
) -> None:
    batch = client.post("/v1/batches", json={"articles": [{"text": TEXT}, {"text": TEXT}]}).get_json()
    for item in batch["items"]:
        assert client.delete(f"/v1/articles/{item['id']}").status_code == 204
    key = f"unit:batch:{batch['id']}"
    assert Settings.result_ttl - 5 < fake_redis.ttl(key) <= Settings.result_ttl
    assert Settings.result_ttl - 5 < fake_redis.ttl(f"{key}:items") <= Settings.result_ttl
    assert client.get(f"/v1/batches/{batch['id']}").get_json()["status"] == "finished"


# listing, deletion, retention
def test_list_filters_and_paginates(client: FlaskClient, store: Store) -> None:
    ids = [submit(client, title=str(i)) for i in range(6)]
    finish(store, ids[0], duplicate=True)
    finish(store, ids[1])
    finish(store, ids[2], fail="boom")
    everything = client.get("/v1/articles").get_json()
    assert [item["id"] for item in everything["items"]] == ids[::-1]  # newest first
    assert everything["next"] is None

    def listed(query: str) -> list[str]:
        return [item["id"] for item in client.get(f"/v1/articles?{query}").get_json()["items"]]

    assert listed("status=queued") == ids[:2:-1]
    assert listed("status=done") == [ids[1], ids[0]]
    assert listed("duplicate=true") == [ids[0]]
    assert listed("duplicate=false") == [ids[2], ids[1]]  # checked (the stance of 2 failed)
    assert listed("stance.russia=negative") == [ids[1], ids[0]]
    assert listed("stance.russia=positive") == []
    assert listed("stance.russia=negative&duplicate=false") == [ids[1]]
    done = client.get("/v1/articles?status=done").get_json()["items"][0]
    assert done["stance"] == {"us": "positive", "russia": "negative", "un": "neutral"}
    assert done["expires_at"] > done["finished_at"]

    pages: list[str] = []
    cursor = None
    while True:
        page = client.get("/v1/articles?limit=4" + (f"&cursor={cursor}" if cursor else "")).get_json()
        pages.extend(item["id"] for item in page["items"])
        cursor = page["next"]
        if not cursor:
            break
    assert pages == ids[::-1]


def test_list_time_range(client: FlaskClient) -> None:
    first = submit(client)
    time.sleep(0.01)
    second = submit(client)
    created = {i: client.get(f"/v1/articles/{i}").get_json()["created_at"] for i in (first, second)}

    def listed(**query: str) -> list[str]:
        return [i["id"] for i in client.get("/v1/articles", query_string=query).get_json()["items"]]

    assert listed(since=created[second]) == [second]  # since: inclusive
    assert listed(until=created[second]) == [first]  # until: exclusive
    assert listed(since=created[first], until=created[second]) == [first]
    assert listed(since=created[first]) == [second, first]
    assert listed(since="2000-01-01T00:00:00+00:00", until="2000-01-02T00:00:00+00:00") == []


def test_list_validation(client: FlaskClient) -> None:
    assert_problem(client.get("/v1/articles?status=lost"), 422, "validation-error")
    assert_problem(client.get("/v1/articles?stance.mars=negative"), 422, "validation-error")
    problem = assert_problem(client.get("/v1/articles?limit=0"), 422, "validation-error")
    assert problem["detail"] == "See `errors` for each invalid query parameter."  # a GET has no body
    assert [error["field"] for error in problem["errors"]] == ["limit"]
    assert_problem(client.get("/v1/articles?since=yesterday"), 422, "validation-error")
    assert_problem(client.get("/v1/articles?cursor=not-a-cursor"), 400, "invalid-cursor")


def test_a_repeated_query_parameter_is_refused_not_half_read(client: FlaskClient) -> None:
    problem = assert_problem(
        client.get("/v1/articles?status=done&status=failed&limit=5"), 422, "validation-error"
    )
    assert problem["errors"] == [{"field": "status", "message": "Given 2 times; give it once."}]
    assert client.get("/v1/articles?status=done&limit=5").status_code == 200


def test_delete_removes_the_article_its_listing_and_its_idempotency_key(
    client: FlaskClient, store: Store, fake_redis: fakeredis.FakeRedis
) -> None:
    article_id = submit(client, text=TEXT + " Again.")
    first = client.post("/v1/articles", json={"text": TEXT}, headers={"Idempotency-Key": "k1"}).get_json()[
        "id"
    ]
    finish(store, first)
    response = client.delete(f"/v1/articles/{first}")
    assert response.status_code == 204
    assert response.get_data() == b""
    assert "Content-Type" not in response.headers  # no body, so no type
    assert_problem(client.get(f"/v1/articles/{first}"), 404, "article-not-found")
    assert_problem(client.delete(f"/v1/articles/{first}"), 404, "article-not-found")
    assert [item["id"] for item in client.get("/v1/articles").get_json()["items"]] == [article_id]
    assert first not in store.list_article_ids()
    assert not any(b"idempotency" in key for key in fake_redis.keys("*"))
    again = client.post("/v1/articles", json={"text": TEXT}, headers={"Idempotency-Key": "k1"})
    assert again.status_code == 202
    assert "Idempotent-Replayed" not in again.headers  # the key was freed with its article
    assert finish(store, first) is None  # a late analysis of a deleted article writes nothing back
    assert not fake_redis.exists(f"unit:article:{first}")


def test_finished_article_expires_after_the_result_ttl(
    client: FlaskClient, store: Store, fake_redis: fakeredis.FakeRedis
) -> None:
    article_id = submit(client)
    assert fake_redis.ttl(f"unit:article:{article_id}") == -1  # unfinished articles never expire
    finish(store, article_id)
    ttl = fake_redis.ttl(f"unit:article:{article_id}")
    assert Settings.result_ttl - 5 < ttl <= Settings.result_ttl
    view = client.get(f"/v1/articles/{article_id}").get_json()
    assert view["expires_at"] > view["finished_at"]
    fake_redis.delete(f"unit:article:{article_id}")  # as expiry would
    assert client.get("/v1/articles").get_json()["items"] == []  # the listing drops it lazily
    assert fake_redis.zcard("unit:owner::articles") == 0


def test_prune_drops_expired_entries_older_than_the_ttl(fake_redis: fakeredis.FakeRedis) -> None:
    store = Store(fake_redis, "unit", result_ttl=1)
    kept = store.create_article(NewArticle(text=TEXT)).article_id
    gone = store.create_article(NewArticle(text=TEXT)).article_id
    fake_redis.delete(f"unit:article:{gone}")
    assert store.prune_indexes() == 0  # too recent to have expired
    time.sleep(1.1)
    assert store.prune_indexes() == 2  # the global and the owner's index
    assert store.list_article_ids() == [kept]


def test_prune_reads_page_after_page_past_articles_still_there(fake_redis: fakeredis.FakeRedis) -> None:
    store = Store(fake_redis, "unit", result_ttl=1)
    ids = [store.create_article(NewArticle(text=TEXT)).article_id for _ in range(8)]
    kept = ids[:2]  # old, still there (finished long after they were submitted): a whole page of them
    for article_id in ids[2:]:
        fake_redis.delete(f"unit:article:{article_id}")
    time.sleep(1.1)
    assert store.prune_indexes(limit=2) == 2 * 6  # every gone entry of both indexes, not one page's
    assert sorted(store.list_article_ids()) == sorted(kept)
    assert fake_redis.zcard("unit:owner::articles") == 2


def test_prune_reads_one_page_an_index_once_its_budget_is_spent(fake_redis: fakeredis.FakeRedis) -> None:
    store = Store(fake_redis, "unit", result_ttl=1)
    for _ in range(5):
        fake_redis.delete(f"unit:article:{store.create_article(NewArticle(text=TEXT)).article_id}")
    time.sleep(1.1)
    assert store.prune_indexes(limit=2, budget=0) == 2 * 2  # each index still gets its first page
    assert store.prune_indexes(limit=2) == 2 * 3


# what a completion does, once
def test_completion_is_announced_once_on_the_stream_and_channel(
    store: Store, fake_redis: fakeredis.FakeRedis, app: Flask
) -> None:
    client = app.test_client()
    article_id = submit(client)
    pubsub = fake_redis.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(store.finished_channel(article_id))
    assert finish(store, article_id) == "done"
    # a redelivered analysis finishes again: no second announcement
    store.finish_analysis(article_id, "summary", result={"sentences": [], "text": "x"}, version="v1")
    entries = fake_redis.xrange(store.results_stream)
    assert len(entries) == 1
    fields = {k.decode(): v.decode() for k, v in entries[0][1].items()}
    assert fields["id"] == article_id
    assert fields["status"] == "done"
    view = client.get(f"/v1/articles/{article_id}").get_json()
    assert json.loads(fields["stance"]) == view["stance"]
    assert fields["expires_at"] == view["expires_at"]
    messages = [pubsub.get_message(timeout=0.1) for _ in range(3)]
    assert [m["data"] for m in messages if m] == [b"done"]


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://hooks.example.com/in", True),
        ("http://127.0.0.1:9000/in", False),
        ("http://10.1.2.3/in", False),
        ("http://[::1]/in", False),
        ("http://169.254.169.254/latest", False),
        ("http://localhost/in", False),
        ("http://localhost./in", False),
        ("http://127.0.0.1./in", False),
        ("http://example.com:99999/in", False),
        (f"http://{'é' * 60}.com/in", False),
        ("ftp://example.com/in", False),
        ("https://hooks.example.com/in\x00", False),  # the HTTP client would refuse it only at delivery
        ("https://hooks.example.com/\x7fin", False),
    ],
)
def test_callback_url_is_checked_at_submission(
    store: Store, queue: ListQueue, url: str, allowed: bool
) -> None:
    settings = Settings.from_env({}, key_prefix="unit", rate_limit="off", webhook_secret="s3cret")
    client = create_app(settings, store=store, queue=queue).test_client()
    response = client.post("/v1/articles", json={"text": TEXT, "callback_url": url})
    if allowed:
        assert response.status_code == 202
        view = client.get(f"/v1/articles/{response.get_json()['id']}").get_json()
        assert view["callback"] == {"url": url, "status": "waiting"}
    else:
        problem = assert_problem(response, 422, "validation-error")
        assert [error["field"] for error in problem["errors"]] == ["callback_url"]  # one reason, not two


def test_callback_url_needs_a_webhook_secret(client: FlaskClient) -> None:
    response = client.post("/v1/articles", json={"text": TEXT, "callback_url": "https://example.com/in"})
    problem = assert_problem(response, 422, "validation-error")
    assert "NEWSDESK_WEBHOOK_SECRET" in problem["errors"][0]["message"]


@pytest.mark.parametrize("size", ["0", "1001"])
def test_a_batch_limit_one_page_cannot_hold_is_refused_at_start(size: str) -> None:
    # GET /v1/batches/{id} gives at most 1,000 items a page; a larger batch could not be read in one.
    with pytest.raises(ValueError, match=f"NEWSDESK_MAX_BATCH={size}: must be a whole number from 1 to 1000"):
        Settings.from_env({"NEWSDESK_MAX_BATCH": size})
