"""/metrics and the log lines with a real broker and a real worker process on a real Redis.

The deployment's own key prefix keeps these queues apart from the other tests' workers, so the queue
depths counted before a worker starts are this test's alone.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from newsdesk.metrics import ARTICLES_FINISHED, FLUSH_INTERVAL, MetricsRecorder
from newsdesk.settings import Settings
from newsdesk.store import ANALYSES, NewArticle, Store
from service.app import create_app
from tests.conftest import ServiceProcess, wait_for
from workers.celery_app import (
    RUN_ORDER,
    WEBHOOK_TASK,
    CeleryBrokerView,
    QueueLayout,
    analysis_messages,
    broker_key_prefix,
    create_celery,
    enqueue_analyses,
    enqueue_webhook,
)

pytestmark = pytest.mark.integration

TEXT = (
    "The United Nations welcomed the agreement on Monday. Russia said it would study the text. "
    "Washington praised the negotiators for their patience during the long talks in Geneva."
)


@pytest.fixture
def own_prefix(live_settings: Settings) -> Iterator[Settings]:
    settings = Settings.from_env(
        {}, **{**live_settings.__dict__, "key_prefix": f"metrics-{uuid.uuid4().hex[:8]}"}
    )
    yield settings
    store = Store.from_settings(settings)
    for key in store.redis.scan_iter(match=f"{settings.key_prefix}:*", count=1000):
        store.redis.delete(key)


def scrape(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", buffered=True)
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def test_queue_depths_results_durations_and_task_ids_in_the_logs(
    own_prefix: Settings, start_worker: Callable[..., ServiceProcess], caplog: pytest.LogCaptureFixture
) -> None:
    store = Store.from_settings(own_prefix)
    client = create_app(own_prefix, store=store).test_client()  # the Celery queue: the real broker
    with caplog.at_level(logging.INFO):
        ids = []
        for _ in range(3):
            response = client.post("/v1/articles", json={"text": TEXT}, buffered=True)
            assert response.status_code == 202
            ids.append(response.get_json()["id"])
    # One message per article carries its three analyses; its task id is on the API's line.
    sent: dict[str, str] = {
        record.task_ids: record.article_id
        for record in caplog.records
        if record.getMessage() == "article accepted"
    }
    assert sorted(sent.values()) == sorted(ids)
    assert all(task_id and "," not in task_id for task_id in sent)

    waiting = scrape(client)  # no worker consumes this prefix's queues yet
    assert waiting[("newsdesk_queue_depth", (("queue", "analyses"),))] == 3
    assert waiting[("newsdesk_queue_depth", (("queue", "webhooks"),))] == 0
    assert waiting[("newsdesk_articles_unfinished", ())] == 3
    assert waiting[("newsdesk_workers", ())] == 0
    assert waiting[("newsdesk_submissions_total", (("outcome", "accepted"),))] == 3

    worker = start_worker(concurrency=1, env={"NEWSDESK_KEY_PREFIX": own_prefix.key_prefix})
    wait_for(lambda: store.pending_count() == 0, 120, "the articles to finish", worker)
    # The worker writes its figures about once a second.
    wait_for(
        lambda: all(
            scrape(client).get(("newsdesk_analysis_duration_seconds_count", (("analysis", analysis),))) == 3
            for analysis in ANALYSES
        ),
        10,
        "the last durations",
    )

    done = scrape(client)
    assert done[("newsdesk_queue_depth", (("queue", "analyses"),))] == 0
    for analysis in ANALYSES:
        assert done[("newsdesk_analysis_results_total", (("analysis", analysis), ("status", "done")))] == 3
        assert done[("newsdesk_analysis_duration_seconds_count", (("analysis", analysis),))] == 3
        assert done[("newsdesk_analysis_duration_seconds_sum", (("analysis", analysis),))] > 0
    assert done[("newsdesk_articles_finished_total", (("status", "done"),))] == 3
    assert done[("newsdesk_workers", ())] == 1

    # Each task the API sent shows up in the worker's log: a line per analysis, with its article.
    lines = worker.log_path.read_text(errors="replace").splitlines()
    for task_id, article_id in sent.items():
        done_lines = [
            line for line in lines if f"task_id={task_id}" in line and 'event="analysis done"' in line
        ]
        assert len(done_lines) == 3
        for line, analysis in zip(done_lines, RUN_ORDER, strict=True):
            assert re.search(rf"\barticle_id={article_id}\b", line)
            assert f"analysis={analysis}" in line


def test_stance_on_a_queue_of_its_own_is_taken_by_its_own_worker(
    own_prefix: Settings, start_worker: Callable[..., ServiceProcess]
) -> None:
    split = Settings.from_env({}, **{**own_prefix.__dict__, "analysis_queues": "stance=stance"})
    store = Store.from_settings(split)
    client = create_app(split, store=store).test_client()
    ids = [client.post("/v1/articles", json={"text": TEXT}).get_json()["id"] for _ in range(2)]
    waiting = scrape(client)
    assert waiting[("newsdesk_queue_depth", (("queue", "analyses"),))] == 2
    assert waiting[("newsdesk_queue_depth", (("queue", "stance"),))] == 2

    env = {"NEWSDESK_KEY_PREFIX": split.key_prefix, "NEWSDESK_ANALYSIS_QUEUES": "stance=stance"}
    general = start_worker(concurrency=1, env={**env, "NEWSDESK_WORKER_QUEUES": "analyses,webhooks"})
    wait_for(
        lambda: all(store.get_article(i).analyses["duplicates"].status == "done" for i in ids),  # type: ignore[union-attr]
        60,
        "summary and duplicates",
        general,
    )
    assert {store.get_article(i).analyses["stance"].status for i in ids} == {"queued"}  # type: ignore[union-attr]
    stance_worker = start_worker(concurrency=1, env={**env, "NEWSDESK_WORKER_QUEUES": "stance"})
    wait_for(lambda: store.pending_count() == 0, 60, "stance", stance_worker)
    assert {store.get_article(i).status for i in ids} == {"done"}  # type: ignore[union-attr]
    lines = stance_worker.log_path.read_text(errors="replace").splitlines()
    assert sum('event="analysis done"' in line and "analysis=stance" in line for line in lines) == 2
    assert not any("analysis=summary" in line for line in lines)


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")  # forking with the flusher thread running
def test_a_forked_child_writes_its_own_figures_and_not_its_parents(own_prefix: Settings) -> None:
    recorder = MetricsRecorder(Store.from_settings(own_prefix).redis, own_prefix.key_prefix)
    key, field = recorder.key(ARTICLES_FINISHED.name), '["done"]'
    recorder.record(ARTICLES_FINISHED.inc("done"))  # not written yet
    pid = os.fork()
    if pid == 0:  # the child: no flush of its own, so only a flusher thread of its own can write
        recorder.record(ARTICLES_FINISHED.inc("done", amount=10))
        deadline = time.monotonic() + 5 * FLUSH_INTERVAL
        while time.monotonic() < deadline:
            if int(recorder.client.hget(key, field) or 0) >= 10:
                os._exit(0)
            time.sleep(0.05)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child's figures were not written"
    recorder.flush()
    assert int(recorder.client.hget(key, field) or 0) == 11  # the parent's one event counted once


def test_a_process_writes_its_last_figures_as_it_exits(own_prefix: Settings) -> None:
    program = (
        "import sys; from newsdesk.metrics import ARTICLES_FINISHED; from newsdesk.settings import Settings; "
        "from newsdesk.store import Store; "
        "Store.from_settings(Settings.from_env()).metrics.record(ARTICLES_FINISHED.inc('failed')); "
        "sys.exit(0)"
    )
    env = {**os.environ, "REDIS_URL": own_prefix.redis_url, "NEWSDESK_KEY_PREFIX": own_prefix.key_prefix}
    subprocess.run([sys.executable, "-c", program], env=env, check=True, timeout=60)
    store = Store.from_settings(own_prefix)
    assert store.redis.hget(store.metrics.key(ARTICLES_FINISHED.name), '["failed"]') == b"1"


def _without_ids(message: dict[str, Any]) -> dict[str, Any]:
    """A broker message with the fields that differ on every send blanked, and its body decoded."""
    headers = {**message["headers"], "id": None, "root_id": None}
    properties = {**message["properties"], "correlation_id": None, "delivery_tag": None}
    body = json.loads(base64.b64decode(message["body"]))
    return {**message, "headers": headers, "properties": properties, "body": body}


def test_the_messages_the_store_pushes_are_those_celery_sends(own_prefix: Settings) -> None:
    """The API's messages are built beside Celery's send (one step with the article's storing): on a
    real Redis, each must equal what `send_task` puts in the same queue's list, on every field but the
    ids. A Celery or kombu upgrade that changes the message fails here."""
    split = Settings.from_env({}, **{**own_prefix.__dict__, "analysis_queues": "stance=stance"})
    app, layout, prefix = create_celery(split), QueueLayout.from_settings(split), broker_key_prefix(split)
    store = Store.from_settings(split)
    article_id = uuid.uuid4().hex

    enqueue_analyses(app, layout, article_id)
    sent = {queue: store.redis.rpop(f"{prefix}{queue}") for queue in ("analyses", "stance")}
    ours = analysis_messages(app, layout, prefix, article_id)

    assert [message.key for message in ours] == [f"{prefix}analyses", f"{prefix}stance"]
    for message, queue in zip(ours, ("analyses", "stance"), strict=True):
        celery_message = json.loads(sent[queue])  # type: ignore[arg-type]
        built = json.loads(message.payload)
        assert built["headers"]["id"] == message.id
        assert _without_ids(built) == _without_ids(celery_message)
    assert store.redis.exists(*(f"{prefix}{queue}" for queue in layout.queues)) == 0


def test_the_broker_view_reads_which_messages_wait_in_a_queue(own_prefix: Settings) -> None:
    """The sweeper's question "is this started analysis's message still waiting?", answered on a real
    Redis from what Celery sent and what the store pushed, past one LRANGE chunk."""
    split = Settings.from_env({}, **{**own_prefix.__dict__, "analysis_queues": "stance=stance"})
    app, layout = create_celery(split), QueueLayout.from_settings(split)
    store = Store.from_settings(split)
    sent_by_celery = [uuid.uuid4().hex for _ in range(1200)]
    with app.producer_or_acquire():
        for article_id in sent_by_celery:
            enqueue_analyses(app, layout, article_id, ["stance"])
    pushed_by_store = store.create_article(
        NewArticle(text="Words here."),
        messages=lambda article_id: analysis_messages(app, layout, broker_key_prefix(split), article_id),
    ).article_id
    enqueue_webhook(app, pushed_by_store)
    store.redis.rpush(f"{broker_key_prefix(split)}stance", b"not a message of ours")

    broker = CeleryBrokerView(app, store.redis, split)
    assert broker.waiting("stance") == {("stance", a) for a in [*sent_by_celery, pushed_by_store]}
    assert broker.waiting("analyses") == {("summary", pushed_by_store), ("duplicates", pushed_by_store)}
    assert broker.waiting("webhooks") == {(WEBHOOK_TASK, pushed_by_store)}
    assert broker.held() == set()
