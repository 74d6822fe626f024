"""The service as users run it: `newsdesk run` (embedded default), and separate API and worker processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from newsdesk.embedded import free_port
from newsdesk.store import Store
from tests.conftest import ServiceProcess, wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "seeds"
WIRE = SEEDS / "000_9e29d44066a107d1.txt"


def newsdesk(*arguments: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "newsdesk", *arguments],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_embedded_default_runs_and_keeps_results_across_a_restart(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # the embedded default
    env["PYTHONUNBUFFERED"] = "1"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    arguments = ["run", "--port", str(port), "--data-dir", str(tmp_path / "data"), "--concurrency", "1"]

    first = ServiceProcess("run-1", arguments, env, tmp_path / "run-1.log").start()
    try:
        wait_for(lambda: f"newsdesk is running at {url}" in first.log(), 90, "newsdesk run", first)
        assert httpx.get(f"{url}/readyz", timeout=1).status_code == 200
        seeds = httpx.get(f"{url}/v1/seeds").json()
        assert seeds["count"] == 5  # loaded from seeds/ on start
        # The seed commands find the embedded Redis (on a free port) through the data folder.
        listed = newsdesk("seeds", "--data-dir", str(tmp_path / "data"), "list", env=env)
        assert listed.returncode == 0, listed.stderr
        assert sorted(line.split("\t")[0] for line in listed.stdout.splitlines()) == sorted(
            p.stem for p in SEEDS.glob("*.txt")
        )
        assert "newsdesk run's embedded Redis" in listed.stderr

        submitted = newsdesk("submit", str(WIRE), "--wait", "--url", url, env=env)
        assert submitted.returncode == 0, submitted.stderr
        result = json.loads(submitted.stdout)
        assert result["status"] == "done"
        assert {m["seed_id"] for m in result["duplicates"]["matches"]} >= {
            p.stem for p in sorted(SEEDS.glob("00[012]_*"))
        }
    finally:
        first.stop(signal.SIGINT, timeout=60)
    assert first.process is not None
    assert first.process.returncode == 0, first.log()
    assert not (tmp_path / "data" / "redis.url").exists()  # gone with the embedded Redis

    second = ServiceProcess("run-2", arguments, env, tmp_path / "run-2.log").start()
    try:
        wait_for(
            lambda: httpx.get(f"{url}/readyz", timeout=1).status_code == 200, 90, "newsdesk run again", second
        )
        again = httpx.get(f"{url}/v1/articles/{result['id']}").json()
        assert again["status"] == "done"
        assert again["summary"] == result["summary"]
        assert again["duplicates"] == result["duplicates"]
        assert httpx.get(f"{url}/v1/seeds").json()["count"] == 5  # reloading changed nothing
    finally:
        second.stop(signal.SIGINT, timeout=60)


def test_separate_api_and_worker_processes(
    start_api: Callable[..., tuple[ServiceProcess, str]],
    start_worker: Callable[..., ServiceProcess],
    service_env: dict[str, str],
    live_store: Store,
) -> None:
    loaded = newsdesk("seeds", "load", str(SEEDS), env=service_env)
    assert loaded.returncode == 0, loaded.stderr
    listed = newsdesk("seeds", "list", env=service_env)
    listed_ids = {line.split("\t")[0] for line in listed.stdout.splitlines()}
    assert listed_ids >= {p.stem for p in SEEDS.glob("*.txt")}  # other tests of the session add seeds too

    _, url = start_api()
    assert httpx.get(f"{url}/readyz").status_code in {200, 503}
    start_worker(concurrency=2)
    wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 200, 30, "readiness")

    texts = [p.read_text(encoding="utf-8") for p in sorted(SEEDS.glob("*.txt"))]
    ids: list[str] = []
    with httpx.Client(base_url=url, timeout=10) as client:
        for text in texts:
            response = client.post("/v1/articles", json={"text": text})
            assert response.status_code == 202
            ids.append(response.json()["id"])

        def all_done() -> bool:
            return all(client.get(f"/v1/articles/{i}").json()["status"] == "done" for i in ids)

        wait_for(all_done, 90, "every article done")
        results: list[dict[str, Any]] = [client.get(f"/v1/articles/{i}").json() for i in ids]
    for result, path in zip(results, sorted(SEEDS.glob("*.txt")), strict=True):
        assert result["duplicates"]["matches"][0]["seed_id"] == path.stem
        assert len(result["summary"]["sentences"]) == 3


def test_chunked_body_over_the_limit_is_413_through_gunicorn(
    start_api: Callable[..., tuple[ServiceProcess, str]], live_store: Store
) -> None:
    _, url = start_api(env={"NEWSDESK_MAX_BODY_BYTES": "65536"})
    body = json.dumps({"text": "word " * 40_000}).encode()  # about 200 KB

    def chunks() -> Any:  # no Content-Length: the body arrives with Transfer-Encoding: chunked
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    before = live_store.list_article_ids(limit=10_000)
    response = httpx.post(
        f"{url}/v1/articles", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert live_store.list_article_ids(limit=10_000) == before
