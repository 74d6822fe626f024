"""/metrics and the log lines with a real broker and a real worker process on a real Redis.

The deployment's own key prefix keeps these queues apart from the other tests' workers, so the queue
depths counted before a worker starts are this test's alone.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from newsdesk.settings import Settings
from newsdesk.store import ANALYSES, Store
from service.app import create_app
from tests.conftest import ServiceProcess, wait_for

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
    sent: dict[str, Any] = {
        record.task_id: record for record in caplog.records if record.getMessage() == "task sent"
    }
    assert len(sent) == 9
    assert {(record.article_id, record.analysis) for record in sent.values()} == {
        (article_id, analysis) for article_id in ids for analysis in ANALYSES
    }

    waiting = scrape(client)  # no worker consumes this prefix's queues yet
    for queue in ANALYSES:
        assert waiting[("newsdesk_queue_depth", (("queue", queue),))] == 3
    assert waiting[("newsdesk_queue_depth", (("queue", "webhooks"),))] == 0
    assert waiting[("newsdesk_articles_unfinished", ())] == 3
    assert waiting[("newsdesk_workers", ())] == 0
    assert waiting[("newsdesk_submissions_total", (("outcome", "accepted"),))] == 3

    worker = start_worker(concurrency=1, env={"NEWSDESK_KEY_PREFIX": own_prefix.key_prefix})
    wait_for(lambda: store.pending_count() == 0, 120, "the articles to finish", worker)
    wait_for(
        lambda: (
            scrape(client).get(("newsdesk_analysis_duration_seconds_count", (("analysis", "stance"),))) == 3
        ),
        10,
        "the last duration",
    )

    done = scrape(client)
    for analysis in ANALYSES:
        assert done[("newsdesk_queue_depth", (("queue", analysis),))] == 0
        assert done[("newsdesk_analysis_results_total", (("analysis", analysis), ("status", "done")))] == 3
        assert done[("newsdesk_analysis_duration_seconds_count", (("analysis", analysis),))] == 3
        assert done[("newsdesk_analysis_duration_seconds_sum", (("analysis", analysis),))] > 0
    assert done[("newsdesk_articles_finished_total", (("status", "done"),))] == 3
    assert done[("newsdesk_workers", ())] == 1

    # Each task the API sent shows up in the worker's log, on one line with its article.
    lines = worker.log_path.read_text(errors="replace").splitlines()
    for task_id, record in sent.items():
        (line,) = [line for line in lines if f"task_id={task_id}" in line and 'event="analysis done"' in line]
        assert re.search(rf"\barticle_id={record.article_id}\b", line)
        assert f"analysis={record.analysis}" in line
