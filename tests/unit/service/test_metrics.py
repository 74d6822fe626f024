"""GET /metrics through the WSGI app, over fakeredis: the exposition format and what each figure counts."""

from __future__ import annotations

import os
import random
import threading
import time
from typing import Any

import fakeredis
import pytest
import redis
from celery.signals import worker_process_shutdown
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from werkzeug.test import TestResponse

from newsdesk.metrics import (
    ANALYSIS_DURATION,
    ANALYSIS_RESULTS,
    ARTICLES_FINISHED,
    FLUSH_INTERVAL,
    MetricsRecorder,
)
from newsdesk.settings import Settings
from newsdesk.store import Store
from service.app import create_app
from service.auth import hash_key
from service.queue import ListQueue
from workers.pipeline import Analyzers, run_analysis

TEXT = (
    "The United Nations welcomed the agreement on Monday. Russia said it would study the text. "
    "Washington praised the negotiators for their patience."
)


class ClosingClient(FlaskClient):
    """Closes each response, as a WSGI server does once it has sent it: request figures are written then."""

    def open(self, *args: Any, **kwargs: Any) -> TestResponse:
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    app.test_client_class = ClosingClient
    return app.test_client()


def scrape(client: FlaskClient) -> dict[str, list[Sample]]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain; version=0.0.4")
    return {family.name: family.samples for family in text_string_to_metric_families(response.get_data(True))}


def value(samples: list[Sample], name: str, **labels: str) -> float:
    matching = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(matching) == 1, f"{name}{labels} not in {samples}"
    return matching[0]


def test_submissions_are_counted_by_outcome(client: FlaskClient) -> None:
    assert client.post("/v1/articles", json={"text": TEXT}).status_code == 202
    keyed = {"Idempotency-Key": "once"}
    assert client.post("/v1/articles", json={"text": TEXT}, headers=keyed).status_code == 202
    assert client.post("/v1/articles", json={"text": TEXT}, headers=keyed).status_code == 202  # replayed
    assert client.post("/v1/articles", json={"text": ""}).status_code == 422
    assert client.post("/v1/articles", data="nope", content_type="application/json").status_code == 400

    families = scrape(client)
    submissions = families["newsdesk_submissions"]
    assert value(submissions, "newsdesk_submissions_total", outcome="accepted") == 2
    assert value(submissions, "newsdesk_submissions_total", outcome="replayed") == 1
    assert value(submissions, "newsdesk_submissions_total", outcome="rejected") == 2
    assert value(families["newsdesk_articles_unfinished"], "newsdesk_articles_unfinished") == 2


def test_each_article_of_a_batch_counts_as_a_submission(client: FlaskClient) -> None:
    batch = {"articles": [{"text": TEXT}, {"text": ""}, {"text": TEXT + " Again."}]}
    keyed = {"Idempotency-Key": "batch-once"}
    assert client.post("/v1/batches", json=batch, headers=keyed).status_code == 202
    assert client.post("/v1/batches", json=batch, headers=keyed).status_code == 202  # replayed

    submissions = scrape(client)["newsdesk_submissions"]
    assert value(submissions, "newsdesk_submissions_total", outcome="accepted") == 2
    assert value(submissions, "newsdesk_submissions_total", outcome="replayed") == 2
    assert value(submissions, "newsdesk_submissions_total", outcome="rejected") == 2


def test_a_batch_refused_whole_counts_each_of_its_articles(store: Store) -> None:
    settings = Settings.from_env(
        {},
        key_prefix="unit",
        stance_scorer="lexicon",
        rate_limit_storage="memory://",
        max_batch=3,
        max_backlog=2,
    )
    app = create_app(settings, store=store, queue=ListQueue())
    app.test_client_class = ClosingClient
    client = app.test_client()
    assert client.post("/v1/batches", json={"articles": [{"text": ""}] * 2}).status_code == 422  # none valid
    assert client.post("/v1/batches", json={"articles": [{"text": TEXT}] * 4}).status_code == 413  # > 3
    assert client.post("/v1/batches", data="nope", content_type="application/json").status_code == 400
    assert client.post("/v1/batches", json={"articles": [{"text": TEXT}] * 3}).status_code == 503  # backlog

    submissions = scrape(client)["newsdesk_submissions"]
    assert value(submissions, "newsdesk_submissions_total", outcome="rejected") == 2 + 4 + 1  # unread: 1
    assert value(submissions, "newsdesk_submissions_total", outcome="unavailable") == 3
    assert not [s for s in submissions if s.labels.get("outcome") == "accepted"]


def test_request_latency_histogram_by_route_template_method_and_status(client: FlaskClient) -> None:
    article_id = client.post("/v1/articles", json={"text": TEXT}).get_json()["id"]
    for _ in range(3):
        assert client.get(f"/v1/articles/{article_id}").status_code == 200
    assert client.get("/v1/articles/missing").status_code == 404
    assert client.get("/no/such/path").status_code == 404

    samples = scrape(client)["newsdesk_http_request_duration_seconds"]
    route = {"method": "GET", "endpoint": "/v1/articles/<string:article_id>"}
    name = "newsdesk_http_request_duration_seconds"
    assert value(samples, f"{name}_count", **route, status="200") == 3
    assert value(samples, f"{name}_bucket", **route, status="200", le="+Inf") == 3
    assert value(samples, f"{name}_count", **route, status="404") == 1
    assert value(samples, f"{name}_count", method="GET", endpoint="unmatched", status="404") == 1
    assert value(samples, f"{name}_count", method="POST", endpoint="/v1/articles", status="202") == 1
    assert value(samples, f"{name}_sum", **route, status="200") > 0
    # Buckets are cumulative and end at the count.
    buckets = [
        s.value
        for s in samples
        if s.name == f"{name}_bucket"
        and s.labels.get("status") == "200"
        and s.labels["endpoint"] == route["endpoint"]
    ]
    assert buckets == sorted(buckets)


def test_an_analysis_run_shows_its_duration_and_result(
    client: FlaskClient, store: Store, settings: Settings
) -> None:
    article_id = client.post("/v1/articles", json={"text": TEXT}).get_json()["id"]
    analyzers = Analyzers(settings, store)
    for analysis in ("summary", "stance", "duplicates"):
        run_analysis(store, analyzers, article_id, analysis)

    families = scrape(client)
    durations = families["newsdesk_analysis_duration_seconds"]
    results = families["newsdesk_analysis_results"]
    for analysis in ("summary", "stance", "duplicates"):
        assert value(durations, "newsdesk_analysis_duration_seconds_count", analysis=analysis) == 1
        assert value(results, "newsdesk_analysis_results_total", analysis=analysis, status="done") == 1
    assert (
        value(families["newsdesk_articles_finished"], "newsdesk_articles_finished_total", status="done") == 1
    )
    assert value(families["newsdesk_articles_unfinished"], "newsdesk_articles_unfinished") == 0


def test_failed_analyses_are_counted_as_failed(client: FlaskClient, store: Store) -> None:
    article_id = client.post("/v1/articles", json={"text": TEXT}).get_json()["id"]
    store.finish_analysis(article_id, "stance", result=None, version="", error="boom")

    results = scrape(client)["newsdesk_analysis_results"]
    assert value(results, "newsdesk_analysis_results_total", analysis="stance", status="failed") == 1


def test_an_article_finished_again_by_a_second_worker_counts_as_finished_once(
    client: FlaskClient, store: Store
) -> None:
    article_id = client.post("/v1/articles", json={"text": TEXT}).get_json()["id"]
    store.finish_analysis(article_id, "summary", result=None, version="", error="boom")
    for analysis in ("stance", "duplicates"):
        store.finish_analysis(article_id, analysis, result={}, version="v1")
    # Tasks of the same analyses redelivered, or run at once by a second worker: new finishes, same article.
    assert store.finish_analysis(article_id, "duplicates", result={}, version="v1") == "failed"
    assert store.finish_analysis(article_id, "summary", result={}, version="v1") == "done"

    families = scrape(client)
    results, finished = families["newsdesk_analysis_results"], families["newsdesk_articles_finished"]
    assert value(results, "newsdesk_analysis_results_total", analysis="duplicates", status="done") == 2
    assert value(finished, "newsdesk_articles_finished_total", status="failed") == 1
    assert not [s for s in finished if s.labels.get("status") == "done"]


def test_gauges_workers_seeds_and_no_queue_depth_without_a_broker(client: FlaskClient, store: Store) -> None:
    store.worker_heartbeat("worker-a@host")
    store.worker_heartbeat("worker-b@host")
    assert client.post("/v1/seeds", json={"id": "s1", "text": TEXT}).status_code == 201

    families = scrape(client)
    assert value(families["newsdesk_workers"], "newsdesk_workers") == 2
    assert value(families["newsdesk_seeds"], "newsdesk_seeds") == 1
    assert families["newsdesk_queue_depth"] == []  # the in-memory queue of these tests has no broker


def test_metrics_need_no_api_key_even_when_keys_are_configured(store: Store, settings: Settings) -> None:
    keyed = Settings.from_env({}, **{**settings.__dict__, "api_keys": f"ops:{hash_key('secret')}"})
    app = create_app(keyed, store=store, queue=ListQueue())
    app.test_client_class = ClosingClient
    client = app.test_client()
    assert client.get("/v1/seeds").status_code == 401
    assert client.get("/metrics").status_code == 200


def test_metrics_answer_503_when_redis_is_down(settings: Settings) -> None:
    server = fakeredis.FakeServer()
    client = create_app(settings, store=Store(fakeredis.FakeRedis(server=server)), queue=ListQueue())
    server.connected = False
    response = client.test_client().get("/metrics")
    assert response.status_code == 503
    assert response.content_type == "application/problem+json"


def test_histogram_buckets_count_a_value_at_its_upper_bound() -> None:
    recorder = MetricsRecorder(fakeredis.FakeRedis(), "unit")
    for seconds in (0.005, 0.0051, 200.0, 2):
        recorder.record(ANALYSIS_DURATION.observe(seconds, "summary"))
    _, histograms = recorder.read()
    value = histograms[ANALYSIS_DURATION.name][("summary",)]
    cumulative = dict(value.cumulative)
    assert cumulative["0.005"] == 1  # le is "less than or equal"
    assert cumulative["0.01"] == 2
    assert cumulative["2.5"] == 3
    assert cumulative["120.0"] == 3
    assert cumulative["+Inf"] == value.count == 4
    assert value.sum == pytest.approx(202.0101)


def test_figures_that_cannot_be_written_are_kept_and_written_once_redis_is_back() -> None:
    server = fakeredis.FakeServer()
    recorder = MetricsRecorder(fakeredis.FakeRedis(server=server), "unit")
    server.connected = False
    recorder.record(ANALYSIS_DURATION.observe(1.0, "summary"))  # never raises
    assert recorder.flush() is False  # nor does a failed write
    recorder.record(ANALYSIS_DURATION.observe(2.0, "summary"))
    server.connected = True
    _, histograms = recorder.read()
    value = histograms[ANALYSIS_DURATION.name][("summary",)]
    assert value.count == 2  # each event once: the failed flush wrote none of its sums
    assert value.sum == pytest.approx(3.0)


def test_recording_sums_events_in_memory_until_a_flush() -> None:
    client = fakeredis.FakeRedis()
    recorder = MetricsRecorder(client, "unit")
    for _ in range(3):
        recorder.record(ANALYSIS_RESULTS.inc("stance", "done"))
    key = recorder.key(ANALYSIS_RESULTS.name)
    field = '["stance","done"]'
    assert recorder.flush() is True
    assert client.hget(key, field) == b"3"
    assert recorder.flush() is True  # nothing new: nothing added twice
    assert client.hget(key, field) == b"3"


def test_the_flusher_thread_writes_recorded_figures_within_about_a_second() -> None:
    client = fakeredis.FakeRedis()
    recorder = MetricsRecorder(client, "unit")
    recorder.record(ARTICLES_FINISHED.inc("done"))
    key = recorder.key(ARTICLES_FINISHED.name)
    deadline = time.monotonic() + 5 * FLUSH_INTERVAL
    while client.hget(key, '["done"]') is None:
        assert time.monotonic() < deadline, "the flusher thread wrote nothing"
        time.sleep(0.05)
    assert client.hget(key, '["done"]') == b"1"


def test_a_celery_pool_process_writes_its_figures_as_it_exits() -> None:
    """Pool processes end with os._exit (no atexit): Celery's shutdown signal, sent just before, flushes."""
    import workers.tasks  # noqa: F401, PLC0415 - the worker module connects the signal

    client = fakeredis.FakeRedis()
    recorder = MetricsRecorder(client, "unit")
    recorder.record(ARTICLES_FINISHED.inc("failed"))
    worker_process_shutdown.send(sender=None, pid=os.getpid(), exitcode=0)
    assert client.hget(recorder.key(ARTICLES_FINISHED.name), '["failed"]') == b"1"


class _FlakyWrite:
    """The recorder's real script, failing as a dropped connection does: before it reaches Redis on
    some calls, after Redis applied it (the reply lost) on others."""

    def __init__(self, write: Any, seed: int) -> None:
        self.write = write
        self.random = random.Random(seed)
        self.lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            fate = self.random.choice(["fine", "lost before", "lost after"])
        if fate == "lost before":
            raise redis.ConnectionError("Connection refused.")
        reply = self.write(*args, **kwargs)
        if fate == "lost after":
            raise redis.ConnectionError("Connection closed by server.")
        return reply


def test_flushes_failing_at_random_from_several_threads_count_every_event_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("newsdesk.metrics._start_flusher", lambda: None)  # the test's threads flush
    recorder = MetricsRecorder(fakeredis.FakeRedis(), "unit")
    real_write = recorder._write
    monkeypatch.setattr(recorder, "_write", _FlakyWrite(real_write, seed=7))

    def events(thread: int) -> None:
        for amount in range(1, 21):
            recorder.record(ARTICLES_FINISHED.inc("done", amount=amount))
            recorder.record(ANALYSIS_DURATION.observe(0.5, "summary"))
            recorder.flush()

    threads = [threading.Thread(target=events, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    monkeypatch.setattr(recorder, "_write", real_write)  # Redis is back
    counters, histograms = recorder.read()
    assert counters[ARTICLES_FINISHED.name][("done",)] == 4 * sum(range(1, 21))
    assert histograms[ANALYSIS_DURATION.name][("summary",)].count == 4 * 20


def test_sums_redis_refuses_for_good_are_dropped_whole_and_later_ones_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("newsdesk.metrics._start_flusher", lambda: None)
    client = fakeredis.FakeRedis()
    recorder = MetricsRecorder(client, "unit")
    # A field that is no count (nothing here writes one; a hand edit could): HINCRBY would fail on it.
    client.hset(recorder.key(ARTICLES_FINISHED.name), '["failed"]', "1.5")
    recorder.record(ANALYSIS_DURATION.observe(0.5, "summary"), ARTICLES_FINISHED.inc("failed"))
    assert recorder.flush() is True  # dropped, not kept to block every later write
    recorder.record(ARTICLES_FINISHED.inc("done"))
    counters, histograms = recorder.read()
    assert counters[ARTICLES_FINISHED.name] == {("failed",): 1.5, ("done",): 1.0}
    assert ("summary",) not in histograms[ANALYSIS_DURATION.name]  # none of the refused write was applied


@pytest.mark.parametrize(
    "refusal",
    [
        "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.",
        "BUSY Redis is busy running a script.",
        "NOREPLICAS Not enough good replicas to write.",
    ],
)
def test_sums_refused_while_redis_cannot_take_writes_for_now_are_kept(
    monkeypatch: pytest.MonkeyPatch, refusal: str
) -> None:
    monkeypatch.setattr("newsdesk.metrics._start_flusher", lambda: None)
    recorder = MetricsRecorder(fakeredis.FakeRedis(), "unit")
    write = recorder._write
    refusals = [redis.ResponseError(refusal)]

    def refusing_once(**kwargs: Any) -> Any:
        if refusals:
            raise refusals.pop()
        return write(**kwargs)

    monkeypatch.setattr(recorder, "_write", refusing_once)
    recorder.record(ARTICLES_FINISHED.inc("done"))
    assert recorder.flush() is False  # kept, to be sent again
    recorder.record(ARTICLES_FINISHED.inc("done"))
    assert recorder.flush() is True
    counters, _ = recorder.read()
    assert counters[ARTICLES_FINISHED.name] == {("done",): 2.0}
