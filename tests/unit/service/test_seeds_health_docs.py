"""Seeds, health and documentation endpoints; storage outages answer 503."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from newsdesk.embedded import free_port
from newsdesk.seeds import SeedFileError, add_seeds, read_seeds
from newsdesk.settings import Settings
from newsdesk.store import Store
from service.app import create_app
from service.queue import ListQueue

SEEDS = Path(__file__).resolve().parents[3] / "seeds"


def test_add_list_and_read_seeds(client: FlaskClient, store: Store) -> None:
    text = (SEEDS / "000_9e29d44066a107d1.txt").read_text(encoding="utf-8")
    created = client.post("/v1/seeds", json={"id": "wire-1", "title": "Wire", "text": text})
    assert created.status_code == 201
    assert created.headers["Location"] == "/v1/seeds/wire-1"
    assert created.get_json()["text"] == text
    generated = client.post("/v1/seeds", json={"text": "Another seed article about talks in Geneva."})
    assert generated.status_code == 201
    generated_id = generated.get_json()["id"]

    page = client.get("/v1/seeds?limit=1").get_json()
    assert page["count"] == 2
    assert len(page["items"]) == 1
    rest = client.get(f"/v1/seeds?after={page['next']}").get_json()
    assert {item["id"] for item in page["items"] + rest["items"]} == {"wire-1", generated_id}
    assert rest["next"] is None
    assert client.get("/v1/seeds/wire-1").get_json()["title"] == "Wire"
    _, sketches = store.seed_sketches_since(0)
    assert [seed_id for seed_id, _ in sketches] == ["wire-1", generated_id]


def test_seed_errors(client: FlaskClient) -> None:
    missing = client.get("/v1/seeds/none")
    assert missing.status_code == 404
    assert missing.mimetype == "application/problem+json"
    bad_id = client.post("/v1/seeds", json={"id": "../etc/passwd", "text": "Some words."})
    assert bad_id.status_code == 422
    assert [e["field"] for e in bad_id.get_json()["errors"]] == ["id"]
    # "$" in a pattern also matches before a final newline: such an id would be stored, then break the
    # Location header.
    newline_id = client.post("/v1/seeds", json={"id": "wire-2\n", "text": "Some words."})
    assert newline_id.status_code == 422
    assert client.get("/v1/seeds").get_json()["items"] == []
    assert client.get("/v1/seeds?limit=0").status_code == 422
    assert client.get("/v1/seeds?limit=5&other=1").status_code == 422


def test_healthz_and_readyz(client: FlaskClient, store: Store) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.get_json()["checks"] == {"redis": "ok", "workers": 0}
    assert not_ready.get_json()["detail"] == "No worker is alive (none wrote a heartbeat in the last 15 s)."
    store.worker_heartbeat("worker-1")
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json() == {"status": "ok", "checks": {"redis": "ok", "workers": 1}}


def test_readyz_says_redis_is_full_when_it_refuses_writes_for_memory(
    client: FlaskClient, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fakeredis has no maxmemory (tests/integration/test_faults.py fills a real Redis): the store's
    answer is stood in for. Heartbeats written before Redis filled still count; none says "unknown"."""
    monkeypatch.setattr(store, "memory_full", lambda: True)
    full = client.get("/readyz")
    assert full.status_code == 503
    assert full.get_json()["checks"] == {"redis": "full", "workers": "unknown"}
    assert full.get_json()["detail"].startswith("Redis is full: at its memory limit it refuses writes")
    store.worker_heartbeat("worker-1")
    assert client.get("/readyz").get_json()["checks"] == {"redis": "full", "workers": 1}


def test_readyz_tells_a_redis_that_answers_with_an_error_from_an_unreachable_one(
    client: FlaskClient, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only() -> bool:
        raise redis.ReadOnlyError("You can't write against a read only replica.")

    monkeypatch.setattr(store, "memory_full", read_only)  # a replica refuses the probe's write
    store.worker_heartbeat("worker-1")
    failing = client.get("/readyz")
    assert failing.status_code == 503
    assert failing.get_json()["checks"] == {"redis": "failing (ReadOnlyError)", "workers": "unknown"}
    assert failing.get_json()["detail"] == "Redis is failing (ReadOnlyError)."


def _unreachable_app(settings: Settings) -> Any:
    down = Settings.from_env({}, redis_url=f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    return create_app(settings, store=Store.from_settings(down), queue=ListQueue()).test_client()


def test_redis_down_is_503_fast_and_nothing_is_queued(settings: Settings) -> None:
    client = _unreachable_app(settings)
    started = time.monotonic()
    response = client.post("/v1/articles", json={"text": "Words to analyse."})
    assert time.monotonic() - started < 1.5
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"]
    assert response.get_json()["type"] == "urn:newsdesk:problem:storage-unavailable"
    assert client.get(f"/v1/articles/{'a' * 32}").status_code == 503  # an id of the form the store makes
    readiness = client.get("/readyz")
    assert readiness.status_code == 503
    assert readiness.get_json()["checks"]["redis"].startswith("unreachable")


def test_openapi_document_and_docs_page(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").get_json()
    assert spec["info"]["title"] == "newsdesk"
    paths = spec["paths"]
    for path in (
        "/v1/articles",
        "/v1/articles/{article_id}",
        "/v1/seeds",
        "/v1/seeds/{seed_id}",
        "/healthz",
        "/readyz",
    ):
        assert path in paths
    post = paths["/v1/articles"]["post"]
    assert set(post["responses"]) >= {"202", "400", "413", "415", "422", "503"}
    for status in ("400", "413", "415", "422", "503"):
        response = post["responses"][status]
        if "$ref" in response:
            response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
        assert list(response["content"]) == ["application/problem+json"]
        assert response["content"]["application/problem+json"]["schema"] == {
            "$ref": "#/components/schemas/Problem"
        }
    assert "ArticleSubmission" in spec["components"]["schemas"]
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert b"/docs/assets/swagger-ui-bundle.js" in docs.data
    asset = client.get("/docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200
    assert len(asset.data) > 100_000
    asset.close()


@pytest.mark.parametrize(
    "seed_id", ["wire-1", "A" + "z" * 127, "0_a.b-C", "7", "b/c", "x" * 150, "-x", "a b"]
)
def test_seed_files_and_the_api_take_the_same_ids(client: FlaskClient, tmp_path: Path, seed_id: str) -> None:
    """An id read from a file is one the API can list, page past and fetch: one rule for both."""
    path = tmp_path / "seeds.jsonl"
    path.write_text(json.dumps({"id": seed_id, "text": "Talks resumed in Geneva."}) + "\n", encoding="utf-8")
    try:
        from_file = [seed.id for seed in read_seeds(path)]
    except SeedFileError:
        from_file = []
    posted = client.post("/v1/seeds", json={"id": seed_id, "text": "Talks resumed in Geneva."})
    assert (posted.status_code == 201) == (from_file == [seed_id])


def test_seeds_loaded_from_files_page_and_fetch_through_the_api(
    client: FlaskClient, store: Store, tmp_path: Path
) -> None:
    ids = ["A" + "z" * 127, "0_a.b-C", "wire-1"]
    for seed_id in ids:
        (tmp_path / f"{seed_id}.txt").write_text(f"Talks resumed in Geneva ({seed_id}).", encoding="utf-8")
    add_seeds(store, read_seeds(tmp_path))
    seen: list[str] = []
    page = client.get("/v1/seeds?limit=1").get_json()
    while True:
        seen += [item["id"] for item in page["items"]]
        if page["next"] is None:
            break
        after = client.get("/v1/seeds", query_string={"limit": 1, "after": page["next"]})
        assert after.status_code == 200
        page = after.get_json()
    assert seen == sorted(ids)
    assert all(client.get(f"/v1/seeds/{seed_id}").status_code == 200 for seed_id in ids)
