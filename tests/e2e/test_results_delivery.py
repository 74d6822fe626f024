"""Results for other services, through real API (gunicorn) and worker processes on a real Redis:
batches, long-polling, the result stream read by a consumer group, signed webhooks with retries, the
client's submit_many and `newsdesk submit --wait`.

These processes run under a key prefix of their own, so no other test's worker (configured without a
webhook secret) takes their tasks.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from newsdesk import webhooks
from newsdesk.client import ArticleResult, NewsdeskClient, NewsdeskError
from tests.conftest import ROOT, ServiceProcess, wait_for

pytestmark = pytest.mark.e2e

SECRET = "e2e-webhook-secret"
SEEDS = sorted((ROOT / "seeds").glob("*.txt"))
FAILURES_BEFORE_SUCCESS = 2


class Receiver:
    """A webhook receiver on loopback: verifies each signature; fails the first attempts of "flaky" ones."""

    def __init__(self) -> None:
        self.deliveries: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                signed = webhooks.verify(
                    SECRET,
                    self.headers.get(webhooks.TIMESTAMP_HEADER, ""),
                    body,
                    self.headers.get(webhooks.SIGNATURE_HEADER, ""),
                )
                payload = json.loads(body)
                with receiver.lock:
                    if not signed:
                        receiver.bad_signatures += 1
                    seen = sum(d["id"] == payload["id"] for d in receiver.deliveries)
                    receiver.deliveries.append(
                        {
                            "id": payload["id"],
                            "status": payload["status"],
                            "delivery": self.headers[webhooks.DELIVERY_HEADER],
                            "attempt": int(self.headers[webhooks.ATTEMPT_HEADER]),
                            "at": time.monotonic(),
                        }
                    )
                flaky = self.path.endswith("flaky") and seen < FAILURES_BEFORE_SUCCESS
                self.send_response(503 if flaky or not signed else 200)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self) -> set[str]:
        """Articles whose delivery was accepted (2xx), as this receiver answered."""
        with self.lock:
            counts = Counter(d["id"] for d in self.deliveries)
        return {i for i, n in counts.items() if n > FAILURES_BEFORE_SUCCESS or not self._flaky(i)}

    def _flaky(self, article_id: str) -> bool:
        return article_id in self.flaky_ids

    flaky_ids: set[str] = set()  # noqa: RUF012 - filled by the test


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture(scope="module")
def stack(
    start_api: Callable[..., tuple[ServiceProcess, str]],
    start_worker: Callable[..., ServiceProcess],
    service_env: dict[str, str],
    key_prefix: str,
) -> Iterator[tuple[str, redis.Redis, str]]:
    prefix = f"{key_prefix}-results"
    env = {
        "NEWSDESK_KEY_PREFIX": prefix,
        "NEWSDESK_WEBHOOK_SECRET": SECRET,
        "NEWSDESK_WEBHOOK_ALLOW_PRIVATE": "1",  # the receiver is on loopback
        "NEWSDESK_WEBHOOK_BACKOFF": "0.2",
        "NEWSDESK_WEBHOOK_MAX_ATTEMPTS": "5",
        "NEWSDESK_MAX_BATCH": "10",
    }
    _, url = start_api(env=env)
    start_worker(concurrency=2, env=env)
    client = redis.Redis.from_url(service_env["REDIS_URL"])
    yield url, client, prefix
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        client.delete(key)


def test_submit_many_stream_webhooks_and_batch(
    stack: tuple[str, redis.Redis, str], receiver: Receiver
) -> None:
    url, client, prefix = stack
    stream = f"{prefix}:results"
    client.xgroup_create(stream, "consumers", id="$", mkstream=True)

    texts = [path.read_text(encoding="utf-8") for path in SEEDS] * 2  # 10 articles: 2 batches of 5
    articles: list[Any] = [
        {
            "text": text,
            "title": f"a{i}",
            "callback_url": f"{receiver.url}/hook/{'flaky' if i % 3 == 0 else 'ok'}",
        }
        for i, text in enumerate(texts)
    ]
    articles.append({"text": ""})  # rejected, with its index
    progress: list[int] = []
    with NewsdeskClient(url) as api:
        results = api.submit_many(
            articles,
            batch_size=6,
            concurrency=2,
            wait=True,
            timeout=240,
            on_result=lambda i, _: progress.append(i),
        )
    assert sorted(progress) == list(range(11))
    assert isinstance(results[10], NewsdeskError)
    assert results[10].errors[0]["field"] == "text"
    finished = [r for r in results[:10] if isinstance(r, ArticleResult)]
    assert [r.status for r in finished] == ["done"] * 10
    assert [r.raw["title"] for r in finished] == [f"a{i}" for i in range(10)]
    ids = {r.id for r in finished}
    Receiver.flaky_ids = {r.id for i, r in enumerate(finished) if i % 3 == 0}

    # The stream: a consumer group reads each finished article once, and acknowledges it.
    seen: list[dict[str, str]] = []
    while len(seen) < 10:
        batch = client.xreadgroup("consumers", "reader-1", {stream: ">"}, count=100, block=5000)
        assert batch, f"stream ran dry after {len(seen)} entries"
        for _, entries in batch:
            for entry_id, fields in entries:
                seen.append({k.decode(): v.decode() for k, v in fields.items()})
                client.xack(stream, "consumers", entry_id)
    assert Counter(entry["id"] for entry in seen) == Counter(dict.fromkeys(ids, 1))
    by_id = {r.id: r for r in finished}
    for entry in seen:
        assert entry["status"] == "done"
        assert json.loads(entry["summary"]) == by_id[entry["id"]].summary
        assert json.loads(entry["duplicates"]) == by_id[entry["id"]].duplicates
    assert client.xpending(stream, "consumers")["pending"] == 0

    # Webhooks: every article delivered (at least once), each signed; flaky receivers retried.
    wait_for(lambda: receiver.delivered() >= ids, 60, "every webhook delivered")
    assert receiver.bad_signatures == 0
    attempts = Counter(d["id"] for d in receiver.deliveries)
    for article_id in Receiver.flaky_ids:
        assert attempts[article_id] == FAILURES_BEFORE_SUCCESS + 1
        tries = [d for d in receiver.deliveries if d["id"] == article_id]
        assert [d["attempt"] for d in tries] == [1, 2, 3]
        assert tries[2]["at"] - tries[1]["at"] >= 0.35  # the second retry waited about twice the first
    for article_id in ids - Receiver.flaky_ids:
        assert attempts[article_id] == 1
    assert {d["delivery"] for d in receiver.deliveries} == ids
    with NewsdeskClient(url) as api:
        wait_for(
            lambda: all(api.get(i).raw["callback"]["status"] == "delivered" for i in ids), 30, "recorded"
        )


def test_long_poll_returns_when_the_article_finishes(stack: tuple[str, redis.Redis, str]) -> None:
    url, _, _ = stack
    with httpx.Client(base_url=url, timeout=60) as http:
        article_id = http.post("/v1/articles", json={"text": SEEDS[0].read_text()}).json()["id"]
        started = time.monotonic()
        response = http.get(f"/v1/articles/{article_id}", params={"wait": 50})
        elapsed = time.monotonic() - started
        assert response.status_code == 200
        assert response.json()["status"] == "done"
        assert elapsed < 40, elapsed  # answered on completion, not at the end of the wait
        assert "Retry-After" not in response.headers
        assert http.get(f"/v1/articles/{article_id}", params={"wait": 61}).status_code == 422

        batch = http.post(
            "/v1/batches", json={"articles": [{"text": p.read_text()} for p in SEEDS[:3]]}
        ).json()
        started = time.monotonic()
        view = http.get(f"/v1/batches/{batch['id']}", params={"wait": 50}).json()
        assert time.monotonic() - started < 40
        assert view["status"] == "finished"
        assert view["counts"]["done"] == 3
        too_many = http.post("/v1/batches", json={"articles": [{"text": "words here"}] * 11})
        assert too_many.status_code == 413
        assert too_many.json()["type"] == "urn:newsdesk:problem:batch-too-large"

        assert http.delete(f"/v1/articles/{article_id}").status_code == 204
        assert http.get(f"/v1/articles/{article_id}").status_code == 404
        listed = [item["id"] for item in http.get("/v1/articles", params={"limit": 500}).json()["items"]]
        assert article_id not in listed
        assert {item["id"] for item in batch["items"]} <= set(listed)


def test_cli_submit_wait_writes_results(stack: tuple[str, redis.Redis, str], tmp_path: Path) -> None:
    url, _, _ = stack
    out = tmp_path / "results"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "newsdesk",
            "submit",
            *map(str, SEEDS),
            "--wait",
            "--url",
            url,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    assert completed.returncode == 0, completed.stderr
    written = {path.stem: json.loads(path.read_text()) for path in out.glob("*.json")}
    assert set(written) == {path.stem for path in SEEDS}
    assert {result["status"] for result in written.values()} == {"done"}
    assert f"{len(SEEDS)} results written" in completed.stderr

    lines = subprocess.run(
        [sys.executable, "-m", "newsdesk", "submit", *map(str, SEEDS[:2]), "--url", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert lines.returncode == 0, lines.stderr
    rows = [json.loads(line) for line in lines.stdout.splitlines()]
    assert [row["file"] for row in rows] == [str(path) for path in SEEDS[:2]]
    assert {row["status"] for row in rows} <= {"queued", "running", "done"}


def test_the_sweeper_sends_a_webhook_whose_delivery_was_lost(
    start_api: Callable[..., tuple[ServiceProcess, str]],
    start_worker: Callable[..., ServiceProcess],
    service_env: dict[str, str],
    key_prefix: str,
    receiver: Receiver,
) -> None:
    prefix = f"{key_prefix}-lost-webhook"
    env = {
        "NEWSDESK_KEY_PREFIX": prefix,
        "NEWSDESK_WEBHOOK_SECRET": SECRET,
        "NEWSDESK_WEBHOOK_ALLOW_PRIVATE": "1",
        # Short recovery bounds, as in the fault tests: the sweeper looks every second.
        "NEWSDESK_TASK_TIME_LIMIT": "10",
        "NEWSDESK_VISIBILITY_TIMEOUT": "25",
        "NEWSDESK_STUCK_AFTER": "12",
        "NEWSDESK_SWEEP_INTERVAL": "2",
    }
    _, url = start_api(env=env)
    worker = start_worker(concurrency=1, env=env)
    client = redis.Redis.from_url(service_env["REDIS_URL"])
    try:
        with NewsdeskClient(url) as api:
            article_id = api.submit(
                SEEDS[4].read_text(encoding="utf-8"), callback_url=f"{receiver.url}/hook/ok"
            ).id
            wait_for(lambda: article_id in receiver.delivered(), 60, "the first delivery", worker)
            # A worker that claimed the webhook and died before sending its delivery task leaves it
            # `queued`, with no message anywhere; its last news is older than NEWSDESK_STUCK_AFTER.
            article_key = f"{prefix}:article:{article_id}"
            client.hset(article_key, "webhook", "queued")
            client.zadd(f"{prefix}:webhooks", {article_id: int(time.time() * 1000) - 60_000})
            wait_for(
                lambda: sum(d["id"] == article_id for d in receiver.deliveries) == 2,
                30,
                "the sweeper to send the lost delivery",
                worker,
            )
            wait_for(lambda: api.get(article_id).raw["callback"]["status"] == "delivered", 10, "delivered")
        deliveries = [d for d in receiver.deliveries if d["id"] == article_id]
        assert {d["delivery"] for d in deliveries} == {article_id}  # one delivery id: receivers dedupe
        assert client.zscore(f"{prefix}:webhooks", article_id) is None  # settled: off the watch list
    finally:
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)
