"""Faults at the process level: killed workers, a Redis restart, Redis down, a burst of submissions.

Each test runs its own processes under its own key prefix, with short delivery bounds (visibility
timeout, stuck-after) so that recovery shows within seconds instead of the production minutes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from newsdesk.embedded import EmbeddedRedis, free_port
from newsdesk.health import worker_check
from newsdesk.settings import Settings
from newsdesk.store import ANALYSES, Store
from tests.conftest import ServiceProcess, wait_for
from workers.celery_app import CeleryBrokerView, create_celery

pytestmark = pytest.mark.integration

SEEDS = Path(__file__).resolve().parents[2] / "seeds"
SEED_TEXTS = [p.read_text(encoding="utf-8") for p in sorted(SEEDS.glob("*.txt"))]
# Recovery bounds for these tests: an unacknowledged message comes back after 25 s (visibility timeout);
# the sweeper re-queues an analysis after 12 s without progress.
FAST_RECOVERY = {
    "NEWSDESK_TASK_TIME_LIMIT": "10",
    "NEWSDESK_VISIBILITY_TIMEOUT": "25",
    "NEWSDESK_STUCK_AFTER": "12",
    "NEWSDESK_SWEEP_INTERVAL": "2",
}


def long_article(copies: int) -> str:
    """A long, real-looking article: the seeds, repeated."""
    return "\n\n".join(SEED_TEXTS[i % len(SEED_TEXTS)] for i in range(copies))


@pytest.fixture(scope="module")
def seconds_per_copy() -> float:
    """This machine's stance time for one seed article. The int8 model runs about ten times faster on a
    CPU with int8 dot-product instructions than on one without, so the tests size their long articles
    by the clock, not by a count of copies: long enough to be caught running, well inside the limit."""
    from workers.analysis.stance import analyse_stance  # noqa: PLC0415
    from workers.analysis.stance_model import OnnxStanceModel  # noqa: PLC0415

    model = OnnxStanceModel.default()
    analyse_stance(SEED_TEXTS[0], model)  # warm-up
    started = time.perf_counter()
    for text in SEED_TEXTS:
        analyse_stance(text, model)
    return (time.perf_counter() - started) / len(SEED_TEXTS)


def article_of(seconds: float, seconds_per_copy: float) -> str:
    """A seed-made article whose stance analysis takes about `seconds` here (task time limit: 10 s),
    or as long as the API accepts: on a fast CPU that comes first."""
    longest_copy = max(len(text) for text in SEED_TEXTS) + 2
    most = min(80, Settings.max_text_chars // longest_copy)
    return long_article(max(2, min(most, round(seconds / seconds_per_copy))))


@pytest.fixture
def isolated(redis_url: str) -> Iterator[dict[str, str]]:
    """Environment overrides giving a test its own key prefix (and so its own queues)."""
    prefix = f"fault-{uuid.uuid4().hex[:8]}"
    yield {"NEWSDESK_KEY_PREFIX": prefix, **FAST_RECOVERY}
    store = Store.from_settings(Settings.from_env({}, redis_url=redis_url, key_prefix=prefix))
    for key in store.redis.scan_iter(match=f"{prefix}:*", count=1000):
        store.redis.delete(key)


def store_for(env: dict[str, str]) -> Store:
    return Store.from_settings(Settings.from_env(env))


@dataclass
class Stack:
    """An API process and a store under a test's own prefix; workers are started by the test."""

    store: Store
    url: str
    env: dict[str, str]
    start_worker: Callable[..., ServiceProcess]

    def worker(self, concurrency: int) -> ServiceProcess:
        return self.start_worker(concurrency=concurrency, env=self.env)


@pytest.fixture
def stack(
    start_worker: Callable[..., ServiceProcess],
    start_api: Callable[..., tuple[ServiceProcess, str]],
    service_env: dict[str, str],
    isolated: dict[str, str],
) -> Stack:
    _, url = start_api(env=isolated)
    return Stack(store_for({**service_env, **isolated}), url, isolated, start_worker)


def submit(client: httpx.Client, text: str) -> str:
    response = client.post("/v1/articles", json={"text": text})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def wait_all_done(store: Store, ids: list[str], timeout: float) -> None:
    def finished() -> bool:
        return all(getattr(store.get_article(i), "status", None) in {"done", "failed"} for i in ids)

    wait_for(finished, timeout, f"{len(ids)} articles to finish")
    statuses = {i: store.get_article(i).status for i in ids}  # type: ignore[union-attr]
    assert set(statuses.values()) == {"done"}, statuses


def test_killing_a_worker_child_mid_analysis_loses_nothing(stack: Stack, seconds_per_copy: float) -> None:
    store, url = stack.store, stack.url
    stack.worker(2)
    with httpx.Client(base_url=url, timeout=10) as client:
        article_id = submit(client, article_of(3.0, seconds_per_copy))

    def stance_running() -> bool:
        article = store.get_article(article_id)
        return article is not None and article.analyses["stance"].status == "running"

    wait_for(stance_running, 30, "the stance analysis to start")
    article = store.get_article(article_id)
    assert article is not None
    worker = article.analyses["stance"].worker
    assert worker
    os.kill(int(worker.rsplit(":", 1)[1]), signal.SIGKILL)  # the pool process running it

    wait_all_done(store, [article_id], 90)
    done = store.get_article(article_id)
    assert done is not None
    assert done.analyses["stance"].attempts == 2  # the message came back once, ran once more
    assert done.analyses["stance"].worker != worker
    assert done.analyses["stance"].result is not None


def test_a_poison_article_fails_after_max_attempts_and_the_queue_keeps_flowing(
    stack: Stack, seconds_per_copy: float
) -> None:
    store, url = stack.store, stack.url
    stack.worker(2)
    with httpx.Client(base_url=url, timeout=10) as client:
        poison = submit(client, article_of(3.0, seconds_per_copy))
        others = [submit(client, SEED_TEXTS[i % 5]) for i in range(6)]

    killed: list[str] = []

    def kill_each_attempt() -> bool:
        """Play the poison: the process that starts its stance analysis dies, every time."""
        article = store.get_article(poison)
        assert article is not None
        stance = article.analyses["stance"]
        if stance.status == "running" and stance.worker and len(killed) < stance.attempts <= 3:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(stance.worker.rsplit(":", 1)[1]), signal.SIGKILL)
            killed.append(stance.worker)
        return stance.status == "failed"

    wait_for(kill_each_attempt, 90, "the poison article to be given up")
    assert len(killed) == 3  # NEWSDESK_MAX_ATTEMPTS
    article = store.get_article(poison)
    assert article is not None
    assert article.status == "failed"
    assert article.analyses["stance"].error is not None
    assert "gave up after 3 attempts" in article.analyses["stance"].error
    assert article.analyses["summary"].status == "done"  # the other analyses of it still ran
    wait_all_done(store, others, 60)


def test_an_analysis_over_the_time_limit_is_retried_then_failed(
    stack: Stack, seconds_per_copy: float
) -> None:
    """The soft time limit (0.9 of NEWSDESK_TASK_TIME_LIMIT) stops a too-long stance analysis; each stop
    counts as an attempt and puts the message straight back, so the article ends `failed` after
    NEWSDESK_MAX_ATTEMPTS, with no help from the sweeper (set here to wait ten minutes)."""
    store, url = stack.store, stack.url
    limits = {"NEWSDESK_TASK_TIME_LIMIT": "2", "NEWSDESK_STUCK_AFTER": "600"}  # soft limit: 1 s
    stack.start_worker(concurrency=1, env={**stack.env, **limits})
    with httpx.Client(base_url=url, timeout=10) as client:
        slow = submit(client, article_of(6.0, seconds_per_copy))
        quick = submit(client, SEED_TEXTS[0])

    def finished(article_id: str) -> bool:
        return getattr(store.get_article(article_id), "status", None) in {"done", "failed"}

    wait_for(lambda: finished(slow), 60, "the slow article to be given up")
    article = store.get_article(slow)
    assert article is not None
    assert article.status == "failed"
    stance = article.analyses["stance"]
    assert stance.status == "failed"
    assert "gave up after 3 attempts" in (stance.error or "")
    assert (article.analyses["summary"].status, article.analyses["duplicates"].status) == ("done", "done")
    wait_all_done(store, [quick], 30)  # the queue kept flowing behind it


def test_killing_the_whole_worker_then_starting_another(stack: Stack, seconds_per_copy: float) -> None:
    store, url = stack.store, stack.url
    first = stack.worker(2)
    with httpx.Client(base_url=url, timeout=10) as client:
        ids = [submit(client, article_of(1.0, seconds_per_copy)) for _ in range(12)]

    def busy() -> bool:  # tasks running, and more waiting: prefetched (reserved) or queued
        articles = [store.get_article(i) for i in ids]
        running = sum(a.analyses[n].status == "running" for a in articles if a for n in ANALYSES)
        unfinished = sum(a.status != "done" for a in articles if a)
        return running >= 1 and unfinished >= 3

    wait_for(busy, 30, "the worker to hold running and waiting tasks")
    settings = Settings.from_env({**os.environ, **stack.env})
    broker = CeleryBrokerView(create_celery(settings), store.redis, settings)
    held = broker.held()
    assert held, "the worker holds messages (running and prefetched)"
    assert {article_id for _, article_id in held} <= set(ids)
    os.killpg(first.pid, signal.SIGKILL)  # the main process and its pool: no warm shutdown
    first.process.wait()  # type: ignore[union-attr]
    stack.worker(2)
    wait_all_done(store, ids, 120)


def test_redis_restart_under_submissions(
    start_worker: Callable[..., ServiceProcess],
    start_api: Callable[..., tuple[ServiceProcess, str]],
    tmp_path: Path,
    isolated: dict[str, str],
) -> None:
    port = free_port()
    server = EmbeddedRedis(tmp_path / "redis", port=port).start()
    # Limits in production proportion to a short outage: a task in flight keeps running through it.
    own = {
        **isolated,
        "REDIS_URL": server.url,
        "NEWSDESK_TASK_TIME_LIMIT": "30",
        "NEWSDESK_VISIBILITY_TIMEOUT": "65",
        "NEWSDESK_STUCK_AFTER": "35",
        "NEWSDESK_RATE_LIMIT": "100000/minute",  # the limiter on, as in production, counting in this Redis
    }
    try:
        start_worker(concurrency=2, env=own)
        _, url = start_api(env=own)
        accepted: list[str] = []
        refused: list[tuple[int, float]] = []
        stop = threading.Event()

        def keep_submitting() -> None:
            with httpx.Client(base_url=url, timeout=10) as client:
                index = 0
                while not stop.is_set():
                    started = time.monotonic()
                    response = client.post("/v1/articles", json={"text": SEED_TEXTS[index % 5]})
                    if response.status_code == 202:
                        accepted.append(response.json()["id"])
                    else:
                        refused.append((response.status_code, time.monotonic() - started))
                    index += 1
                    time.sleep(0.05)

        submitter = threading.Thread(target=keep_submitting)
        submitter.start()
        time.sleep(3)
        server.stop()  # a clean shutdown: Redis writes its append-only file
        time.sleep(2)
        server = EmbeddedRedis(tmp_path / "redis", port=port).start()
        time.sleep(4)
        stop.set()
        submitter.join()

        assert refused, "some submissions should have met the stopped Redis"
        assert {status for status, _ in refused} == {503}
        assert max(seconds for _, seconds in refused) < 2.5
        store = Store.from_settings(
            Settings.from_env({}, redis_url=server.url, key_prefix=isolated["NEWSDESK_KEY_PREFIX"])
        )
        assert len(accepted) == len(set(accepted))
        assert all(store.get_article(i) is not None for i in accepted)  # every 202 survived the restart
        wait_all_done(store, accepted, 120)
    finally:
        server.stop()


def test_redis_down_at_submission_is_503_and_a_retry_gives_one_article(
    start_api: Callable[..., tuple[ServiceProcess, str]], tmp_path: Path, isolated: dict[str, str]
) -> None:
    port = free_port()
    server = EmbeddedRedis(tmp_path / "redis", port=port).start()
    own = {**isolated, "REDIS_URL": server.url, "NEWSDESK_RATE_LIMIT": "600/minute"}  # as in production
    _, url = start_api(env=own)
    server.stop()
    body = {"text": SEED_TEXTS[0]}
    headers = {"Idempotency-Key": "retry-me-1"}
    with httpx.Client(base_url=url, timeout=10) as client:
        started = time.monotonic()
        down = client.post("/v1/articles", json=body, headers=headers)
        assert time.monotonic() - started < 1.5
        assert down.status_code == 503
        assert down.headers["content-type"] == "application/problem+json"
        assert int(down.headers["Retry-After"]) > 0
        server = EmbeddedRedis(tmp_path / "redis", port=port).start()
        try:
            first = client.post("/v1/articles", json=body, headers=headers)
            again = client.post("/v1/articles", json=body, headers=headers)
            assert first.status_code == again.status_code == 202
            assert first.json()["id"] == again.json()["id"]
            store = Store.from_settings(
                Settings.from_env({}, redis_url=server.url, key_prefix=isolated["NEWSDESK_KEY_PREFIX"])
            )
            assert store.list_article_ids() == [first.json()["id"]]
        finally:
            server.stop()


def test_a_full_redis_is_503_storage_full_and_nothing_half_written(
    start_api: Callable[..., tuple[ServiceProcess, str]], tmp_path: Path, isolated: dict[str, str]
) -> None:
    """At its memory limit (noeviction, as deploy/redis.conf) Redis refuses writes: each submission is
    either stored whole, with its message, or refused with a 503 that says the store is full."""
    with EmbeddedRedis(tmp_path / "redis") as server:
        own = {**isolated, "REDIS_URL": server.url, "NEWSDESK_RATE_LIMIT": "6000/minute"}
        _, url = start_api(env=own)
        store = Store.from_settings(Settings.from_env(own))
        used = int(store.redis.info("memory")["used_memory"])
        store.redis.config_set("maxmemory", used + 2_000_000)  # room for a few dozen articles
        accepted: list[str] = []
        with httpx.Client(base_url=url, timeout=10) as client:
            for _ in range(500):
                response = client.post("/v1/articles", json={"text": long_article(8)})
                if response.status_code != 202:
                    break
                accepted.append(response.json()["id"])
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "urn:newsdesk:problem:storage-full"
        assert int(response.headers["Retry-After"]) > 0
        assert accepted, "some articles fit before the limit"
        assert sorted(store.list_article_ids(limit=1000)) == sorted(accepted)
        queue = f"{isolated['NEWSDESK_KEY_PREFIX']}:celery:analyses"
        assert store.redis.llen(queue) == len(
            accepted
        )  # one message per stored article, none for the refused


def test_a_full_redis_is_reported_full_while_its_worker_lives_and_metrics_still_answer(
    start_api: Callable[..., tuple[ServiceProcess, str]],
    start_worker: Callable[..., ServiceProcess],
    tmp_path: Path,
    isolated: dict[str, str],
) -> None:
    """At its memory limit Redis refuses the worker's heartbeat while the worker runs on: /readyz says
    Redis is full rather than that no worker is alive, the worker's health check passes, and /metrics
    (whose queue depths kombu would read with a write, in MULTI) still answers."""
    with EmbeddedRedis(tmp_path / "redis") as server:
        own = {**isolated, "REDIS_URL": server.url}
        worker = start_worker(1, env=own)
        api, url = start_api(env=own)
        store = Store.from_settings(Settings.from_env(own))
        (worker_name,) = store.live_workers(15)
        with httpx.Client(base_url=url, timeout=10) as client:
            wait_for(lambda: client.get("/readyz").status_code == 200, 30, "readiness", api)
            used = int(store.redis.info("memory")["used_memory"])
            store.redis.config_set("maxmemory", used // 2)
            try:
                # As 15 s of refused heartbeats leave it, without the wait (DEL is not refused when full).
                store.redis.delete(f"{isolated['NEWSDESK_KEY_PREFIX']}:workers")
                with pytest.raises(redis.OutOfMemoryError):
                    store.worker_heartbeat(worker_name)
                assert store.live_workers(15) == []
                ready = client.get("/readyz")
                assert ready.status_code == 503
                assert ready.json()["checks"] == {"redis": "full", "workers": "unknown"}
                assert ready.json()["detail"].startswith("Redis is full")
                metrics = client.get("/metrics")
                assert metrics.status_code == 200, metrics.text
                assert 'newsdesk_queue_depth{queue="analyses"} 0.0' in metrics.text
                healthy, reason = worker_check(store, worker_name)
                assert healthy, reason
                assert reason.startswith("Redis is full")
                assert worker.alive()
            finally:
                store.redis.config_set("maxmemory", 0)
            wait_for(lambda: client.get("/readyz").status_code == 200, 30, "the heartbeat back", worker)
        worker.stop()
        api.stop()


def test_a_thousand_submissions_with_two_workers(stack: Stack) -> None:
    store, url = stack.store, stack.url
    stack.worker(1)
    stack.worker(1)
    # Wire-brief length (a seed's first two paragraphs): the burst tests delivery, not the model's speed.
    briefs = ["\n\n".join(text.split("\n\n")[:2]) for text in SEED_TEXTS]
    bodies = [
        {"text": f"{briefs[i % 5]}\n\nUpdate {i}: officials gave no further details."} for i in range(1000)
    ]

    with httpx.Client(base_url=url, timeout=30, limits=httpx.Limits(max_connections=16)) as client:

        def post(body: dict[str, Any]) -> str:
            return submit(client, body["text"])

        with ThreadPoolExecutor(max_workers=16) as pool:
            ids = list(pool.map(post, bodies))

    assert len(set(ids)) == 1000
    assert len(store.list_article_ids(limit=5000)) == 1000  # no article stored twice
    wait_all_done(store, ids, 600)
    for article_id in ids:
        article = store.get_article(article_id)
        assert article is not None
        for name in ANALYSES:
            assert article.analyses[name].attempts == 1  # each analysis ran exactly once
            assert article.analyses[name].result is not None
    assert store.pending_count() == 0
    with contextlib.suppress(Exception):
        store.redis.close()
