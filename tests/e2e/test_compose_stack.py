"""The compose services' own commands, run as processes: no container engine here, so no containers.

Redis starts from deploy/redis.conf with its password supplied as the redis service supplies it; the
seed loader, the API (gunicorn) and the workers run exactly the `command` of their compose service, with
the service's environment (REDIS_URL pointing at this Redis, the API on a free port). With 1 worker
(`--scale worker=1`, one process) and then 3, a batch of articles is submitted over HTTP: every one
ends `done`, the work spreads over the processes, and the batch finishes faster with 3. /metrics then
shows what was done, from the gunicorn API that the workers never talk to.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from newsdesk.embedded import free_port, redis_server_binary
from newsdesk.settings import Settings
from newsdesk.store import ANALYSES, Store
from tests.conftest import ServiceProcess, wait_for
from tests.unit.deploy.compose import ROOT, compose, interpolate

pytestmark = pytest.mark.e2e

SERVICES = compose()["services"]
SEED_TEXTS = [path.read_text(encoding="utf-8") for path in sorted((ROOT / "seeds").glob("*.txt"))]
BATCH = 24  # articles per measured batch: 72 analyses
PASSWORD = uuid.uuid4().hex


class ComposeProcess(ServiceProcess):
    """A compose service's command, run as given (its first word resolved to the installed script)."""

    def start(self) -> ComposeProcess:
        executable = shutil.which(self.arguments[0], path=str(Path(sys.executable).parent))
        assert executable is not None, f"{self.arguments[0]} is not installed next to {sys.executable}"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [executable, *self.arguments[1:]],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=ROOT,
            )
        return self


def run_healthcheck(test: list[str], env: dict[str, str]) -> int:
    """A compose health check's exit status: CMD runs the argv, CMD-SHELL runs the line with sh."""
    kind, *command = test
    argv = ["sh", "-c", command[0]] if kind == "CMD-SHELL" else command
    if argv[0] == "python":
        argv[0] = sys.executable
    return subprocess.run(argv, env=env, capture_output=True, timeout=30, check=False).returncode


@dataclass
class Stack:
    redis_url: str
    api_url: str
    api_env: dict[str, str]
    worker_env: dict[str, str]
    store: Store
    logs: Path
    workers: list[ComposeProcess]

    started: int = 0

    def scale_workers(self, count: int) -> None:
        """`docker compose up -d --scale worker=COUNT`: start or warm-stop worker processes."""
        while len(self.workers) > count:
            worker = self.workers.pop()
            worker.stop(signal.SIGTERM, timeout=60)
            assert worker.process is not None
            assert worker.process.returncode == 0, worker.log()  # a clean warm shutdown
        while len(self.workers) < count:
            self.started += 1
            name = f"worker-{self.started}"
            command = SERVICES["worker"]["command"]
            worker = ComposeProcess(name, command, self.worker_env, self.logs / f"{name}.log").start()
            self.workers.append(worker)
        wait_for(lambda: len(self.store.live_workers(15)) == count, 90, f"{count} live workers")


def service_env(name: str, redis_port: int, extra: dict[str, str]) -> dict[str, str]:
    """The service's compose environment (anchor merged, variables filled in) on this machine."""
    environment = {
        key: interpolate(str(value), {"REDIS_PASSWORD": PASSWORD})
        for key, value in SERVICES[name]["environment"].items()
    }
    environment["REDIS_URL"] = environment["REDIS_URL"].replace("@redis:6379/", f"@127.0.0.1:{redis_port}/")
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSDESK_", "REDIS_"))}
    return {**inherited, **environment, "PYTHONUNBUFFERED": "1", **extra}


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """redis-server from deploy/redis.conf, its password included as the compose command includes it."""
    data = tmp_path_factory.mktemp("redis-data")
    port = free_port()
    script = " ".join(SERVICES["redis"]["command"][2:]).replace("$$", "$")
    script = script.replace("/usr/local/etc/redis/redis.conf", str(ROOT / "deploy" / "redis.conf"))
    script = script.replace("/tmp/requirepass.conf", str(data / "requirepass.conf"))
    script = script.replace("exec redis-server", f"exec {shlex.quote(redis_server_binary())}")
    script += f" --port {port} --bind 127.0.0.1 --logfile redis.log"  # this machine's, after the file's
    server = subprocess.Popen(
        ["sh", "-c", script], cwd=data, env={"REDIS_PASSWORD": PASSWORD, "PATH": os.environ["PATH"]}
    )
    client = redis.Redis(port=port, password=PASSWORD, socket_connect_timeout=0.5)
    try:
        wait_for(client.ping, 15, "redis-server")
        yield port
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(15)


def test_redis_runs_from_the_deploy_config_and_demands_the_password(redis_port: int) -> None:
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=redis_port).ping()
    client = redis.Redis(port=redis_port, password=PASSWORD)
    config = client.config_get("*")
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "everysec"
    assert config["maxmemory-policy"] == "noeviction"
    # The compose health check, pointed at this port: PONG with the password, a failure without it.
    test = list(SERVICES["redis"]["healthcheck"]["test"])
    cli = f"{Path(redis_server_binary()).parent / 'redis-cli'} -p {redis_port}"
    test[1] = test[1].replace("$$", "$").replace("redis-cli", cli)
    assert run_healthcheck(test, {"REDIS_PASSWORD": PASSWORD}) == 0
    assert run_healthcheck(test, {"REDIS_PASSWORD": "wrong"}) != 0


@pytest.fixture(scope="module")
def stack(redis_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("compose-logs")
    api_port = free_port()
    shared = {"NEWSDESK_SEEDS_DIR": str(ROOT / "seeds")}  # where the API image keeps them: /app/seeds
    seeds = ComposeProcess(
        "seeds", SERVICES["seeds"]["command"], service_env("seeds", redis_port, shared), logs / "seeds.log"
    ).start()
    assert seeds.process is not None
    assert seeds.process.wait(120) == 0, seeds.log()

    api_env = service_env(
        "api", redis_port, {**shared, "NEWSDESK_API_HOST": "127.0.0.1", "NEWSDESK_API_PORT": str(api_port)}
    )
    api = ComposeProcess("api", SERVICES["api"]["command"], api_env, logs / "api.log").start()
    # One process per worker container, as with NEWSDESK_WORKER_CONCURRENCY=1 in .env.
    worker_env = service_env("worker", redis_port, {"NEWSDESK_WORKER_CONCURRENCY": "1"})
    store = Store.from_settings(Settings.from_env(worker_env))
    built = Stack(
        worker_env["REDIS_URL"], f"http://127.0.0.1:{api_port}", api_env, worker_env, store, logs, []
    )
    try:
        wait_for(
            lambda: httpx.get(f"{built.api_url}/healthz", timeout=1).status_code == 200, 60, "the API", api
        )
        yield built
    finally:
        for worker in built.workers:
            worker.stop(signal.SIGTERM, timeout=60)
        api.stop()


def submit_batch(client: httpx.Client, count: int, tag: str) -> list[str]:
    ids = []
    for number in range(count):
        text = f"{SEED_TEXTS[number % len(SEED_TEXTS)]}\n\nReport {tag}-{number}."
        response = client.post("/v1/articles", json={"text": text, "title": f"{tag} {number}"})
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    return ids


def run_batch(stack: Stack, client: httpx.Client, tag: str, count: int = BATCH) -> tuple[list[str], float]:
    """Submit a batch and wait until nothing is unfinished; returns the ids and articles per second."""
    started = time.perf_counter()
    ids = submit_batch(client, count, tag)
    wait_for(lambda: stack.store.pending_count() == 0, 300, f"batch {tag} to finish")
    return ids, count / (time.perf_counter() - started)


def processes_and_overlap(store: Store, ids: list[str]) -> tuple[set[str], int]:
    """The processes that ran the batch's analyses, and the most analyses that ran at one moment."""
    events: list[tuple[datetime, int]] = []
    processes: set[str] = set()
    for article_id in ids:
        article = store.get_article(article_id)
        assert article is not None
        for state in article.analyses.values():
            assert state.started_at is not None
            assert state.finished_at is not None
            assert state.worker is not None
            processes.add(state.worker)
            events += [
                (datetime.fromisoformat(state.started_at), 1),
                (datetime.fromisoformat(state.finished_at), -1),
            ]
    running = most = 0
    for _, change in sorted(events, key=lambda event: (event[0], event[1])):
        running += change
        most = max(most, running)
    return processes, most


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_one_then_three_workers_analyse_every_article_and_three_are_faster(stack: Stack) -> None:
    # Ready (the compose health checks, as Docker would run them) once a worker lives.
    assert run_healthcheck(SERVICES["api"]["healthcheck"]["test"], stack.api_env) != 0  # no worker yet
    stack.scale_workers(1)
    wait_for(
        lambda: run_healthcheck(SERVICES["api"]["healthcheck"]["test"], stack.api_env) == 0, 30, "/readyz"
    )
    assert run_healthcheck(SERVICES["worker"]["healthcheck"]["test"], stack.worker_env) == 0

    # 1, 3, 1, 3 workers: the two rounds of each cancel a machine that gets busier or quieter meanwhile.
    rates: dict[int, list[float]] = {1: [], 3: []}
    batches: dict[int, list[list[str]]] = {1: [], 3: []}
    warm_ids: list[str] = []
    with httpx.Client(base_url=stack.api_url, timeout=30) as client:
        for round_number, workers in enumerate((1, 3, 1, 3)):
            stack.scale_workers(workers)
            # New processes load the stance model on their first article: not part of the measure.
            warm_ids += run_batch(stack, client, f"warm-{round_number}", 2 * workers)[0]
            ids, rate = run_batch(stack, client, f"round-{round_number}")
            batches[workers].append(ids)
            rates[workers].append(rate)

        for article_id in [i for ids in batches[1] + batches[3] for i in ids]:
            article = client.get(f"/v1/articles/{article_id}").json()
            assert article["status"] == "done", article
            assert set(ANALYSES) <= set(article)

    print(f"\nworker processes | articles/s, {BATCH} articles per round")
    for workers, measured in rates.items():
        print(f"{workers} | " + " / ".join(f"{rate:.2f}" for rate in measured))
    for ids in batches[1]:
        processes, overlap = processes_and_overlap(stack.store, ids)
        assert len(processes) == 1
        assert overlap == 1  # one process: one analysis at a time
    for ids in batches[3]:
        processes, overlap = processes_and_overlap(stack.store, ids)
        assert len(processes) == 3  # every worker took a share
        assert overlap == 3  # ... at the same time
    # On a quiet 2-core machine three processes analyse 1.5-2x as fast as one.
    assert sum(rates[3]) > sum(rates[1])

    # /metrics on the gunicorn API: what the workers recorded in Redis.
    total = len(warm_ids) + 4 * BATCH
    expected = {("newsdesk_submissions_total", (("outcome", "accepted"),)): total}
    for analysis in ANALYSES:
        labels = (("analysis", analysis),)
        expected[("newsdesk_analysis_duration_seconds_count", labels)] = total
        expected[("newsdesk_analysis_results_total", (*labels, ("status", "done")))] = total
    expected[("newsdesk_queue_depth", (("queue", "analyses"),))] = 0
    expected[("newsdesk_articles_finished_total", (("status", "done"),))] = total
    expected[("newsdesk_workers", ())] = 3
    expected[("newsdesk_articles_unfinished", ())] = 0
    wait_for(
        lambda: all(scrape(stack.api_url).get(key) == value for key, value in expected.items()),
        15,
        "the metrics",
    )
    metrics = scrape(stack.api_url)
    post = (("endpoint", "/v1/articles"), ("method", "POST"), ("status", "202"))
    assert metrics[("newsdesk_http_request_duration_seconds_count", post)] == total
    assert metrics[("newsdesk_seeds", ())] == len(SEED_TEXTS)

    stack.scale_workers(0)  # warm shutdowns, each checked
    assert not stack.store.live_workers(15)  # they signed off
