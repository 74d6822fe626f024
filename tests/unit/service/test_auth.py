"""API keys: 401 without a valid key, each key sees only its own articles."""

from __future__ import annotations

import fakeredis
import pytest
from flask.testing import FlaskClient

from newsdesk.settings import Settings
from newsdesk.store import Store
from service.app import create_app
from service.auth import hash_key
from service.queue import ListQueue

KEY_A = "nd_key-of-newsroom-a"
KEY_B = "nd_key-of-newsroom-b"
ARTICLE = {"text": "Russia and the United States met at the UN on Monday."}


@pytest.fixture
def keyed(fake_redis: fakeredis.FakeRedis) -> FlaskClient:
    settings = Settings.from_env(
        {}, key_prefix="unit", api_keys=f"newsroom-a:{hash_key(KEY_A)}, newsroom-b:{hash_key(KEY_B)}"
    )
    return create_app(settings, store=Store(fake_redis, "unit"), queue=ListQueue()).test_client()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic abc"},
        bearer("nd_wrong"),
        bearer(KEY_A + "x"),
    ],
)
def test_requests_without_a_valid_key_are_401(keyed: FlaskClient, headers: dict[str, str]) -> None:
    for response in (
        keyed.post("/v1/articles", json=ARTICLE, headers=headers),
        keyed.get("/v1/articles/abc", headers=headers),
        keyed.get("/v1/seeds", headers=headers),
    ):
        assert response.status_code == 401
        assert response.mimetype == "application/problem+json"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_401_comes_before_body_checks(keyed: FlaskClient) -> None:
    response = keyed.post("/v1/articles", data=b"not json", content_type="text/plain")
    assert response.status_code == 401


def test_each_key_sees_only_its_own_articles(keyed: FlaskClient) -> None:
    created = keyed.post("/v1/articles", json=ARTICLE, headers=bearer(KEY_A))
    assert created.status_code == 202
    article_id = created.get_json()["id"]
    assert keyed.get(f"/v1/articles/{article_id}", headers=bearer(KEY_A)).status_code == 200
    other = keyed.get(f"/v1/articles/{article_id}", headers=bearer(KEY_B))
    assert other.status_code == 404
    assert other.get_json()["type"] == "urn:newsdesk:problem:article-not-found"


def test_idempotency_keys_are_per_api_key(keyed: FlaskClient) -> None:
    headers_a = {**bearer(KEY_A), "Idempotency-Key": "same-key"}
    headers_b = {**bearer(KEY_B), "Idempotency-Key": "same-key"}
    first = keyed.post("/v1/articles", json=ARTICLE, headers=headers_a).get_json()["id"]
    second = keyed.post("/v1/articles", json={"text": "Another article entirely."}, headers=headers_b)
    assert second.status_code == 202
    assert second.get_json()["id"] != first


def test_health_and_docs_need_no_key(keyed: FlaskClient) -> None:
    assert keyed.get("/healthz").status_code == 200
    assert keyed.get("/openapi.json").status_code == 200


def test_malformed_key_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="NEWSDESK_API_KEYS"):
        Settings.from_env({"NEWSDESK_API_KEYS": "newsroom-a:not-a-hash"})


def test_a_name_may_have_two_keys_while_clients_move_to_the_new_one(fake_redis: fakeredis.FakeRedis) -> None:
    new_key = "nd_new-key-of-newsroom-a"
    settings = Settings.from_env(
        {}, key_prefix="unit", api_keys=f"newsroom-a:{hash_key(KEY_A)},newsroom-a:{hash_key(new_key)}"
    )
    client = create_app(settings, store=Store(fake_redis, "unit"), queue=ListQueue()).test_client()
    submitted = client.post("/v1/articles", json=ARTICLE, headers=bearer(KEY_A))
    assert submitted.status_code == 202
    article_id = submitted.get_json()["id"]
    assert client.get(f"/v1/articles/{article_id}", headers=bearer(new_key)).status_code == 200  # same owner
    assert client.get(f"/v1/articles/{article_id}", headers=bearer(KEY_A)).status_code == 200


def test_one_key_under_two_names_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="one key is given to both 'newsroom-a' and 'newsroom-b'"):
        Settings.from_env({"NEWSDESK_API_KEYS": f"newsroom-a:{hash_key(KEY_A)},newsroom-b:{hash_key(KEY_A)}"})
