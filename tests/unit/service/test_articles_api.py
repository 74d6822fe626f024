"""The articles API through the real WSGI app, over fakeredis, with an in-memory queue."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from newsdesk.store import Store
from service.queue import ListQueue

ARTICLE = {"text": "Russia and the United States met at the UN on Monday. Talks went well.", "title": "Talks"}


def post(client: FlaskClient, body: Any, **kwargs: Any) -> Any:
    return client.post("/v1/articles", json=body, **kwargs)


def assert_problem(response: Any, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    problem = response.get_json(force=True)
    assert problem["status"] == status
    assert problem["type"] == f"urn:newsdesk:problem:{kind}"
    assert problem["title"]
    return problem  # type: ignore[no-any-return]


def test_submit_stores_then_enqueues(client: FlaskClient, store: Store, queue: ListQueue) -> None:
    response = post(
        client,
        {
            **ARTICLE,
            "source": "Wire",
            "url": "https://example.com/a",
            "published_at": "2024-01-21T10:00:00+09:00",
            "options": {"summary_sentences": 2},
        },
    )
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "queued"
    assert response.headers["Location"] == f"/v1/articles/{body['id']}"
    assert response.headers["Retry-After"] == "1"
    assert queue.article_ids(store.redis) == [body["id"]]
    article = store.get_article(body["id"])
    assert article is not None
    assert article.text == ARTICLE["text"]
    assert article.metadata == {
        "title": "Talks",
        "source": "Wire",
        "url": "https://example.com/a",
        "published_at": "2024-01-21T01:00:00.000Z",  # UTC, like every time the API gives
    }
    assert article.options == {"summary_sentences": 2}


def test_poll_shows_each_block(client: FlaskClient, store: Store) -> None:
    article_id = post(client, ARTICLE).get_json()["id"]
    queued = client.get(f"/v1/articles/{article_id}")
    assert queued.status_code == 200
    assert queued.headers["Retry-After"] == "1"
    view = queued.get_json()
    assert view["status"] == "queued"
    assert view["title"] == "Talks"
    assert view["text_length"] == len(ARTICLE["text"])
    assert {view[name]["status"] for name in ("summary", "stance", "duplicates")} == {"queued"}

    store.start_analysis(article_id, "summary")
    store.finish_analysis(article_id, "summary", result={"sentences": [], "text": ""}, version="summary-1")
    view = client.get(f"/v1/articles/{article_id}").get_json()
    assert view["status"] == "running"
    assert view["summary"] == {
        "status": "done",
        "sentences": [],
        "text": "",
        "version": "summary-1",
        "finished_at": view["summary"]["finished_at"],
    }
    assert view["stance"] == {"status": "queued"}


def test_unknown_article_is_404(client: FlaskClient) -> None:
    problem = assert_problem(client.get("/v1/articles/0123456789abcdef"), 404, "article-not-found")
    assert "0123456789abcdef" in problem["detail"]
    assert_problem(client.get("/v1/articles/" + "x" * 500), 404, "article-not-found")


def test_idempotency_key(client: FlaskClient, store: Store, queue: ListQueue) -> None:
    first = post(client, ARTICLE, headers={"Idempotency-Key": "abc-1"})
    again = post(client, ARTICLE, headers={"Idempotency-Key": "abc-1"})
    assert first.status_code == again.status_code == 202
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert queue.article_ids(store.redis) == [first.get_json()["id"]]  # enqueued once
    conflict = post(client, {**ARTICLE, "title": "Other"}, headers={"Idempotency-Key": "abc-1"})
    problem = assert_problem(conflict, 422, "idempotency-key-reused")
    assert problem["id"] == first.get_json()["id"]
    assert_problem(
        post(client, ARTICLE, headers={"Idempotency-Key": "bad key with spaces"}),
        400,
        "invalid-idempotency-key",
    )


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["text"]),
        ({"text": ""}, ["text"]),
        ({"text": "   \n "}, ["text"]),
        ({"text": "12 34 56 !!!"}, ["text"]),
        ({"text": 42}, ["text"]),
        ({"text": ["a"]}, ["text"]),
        ({"text": None}, ["text"]),
        ({"text": "ok words", "title": 5}, ["title"]),
        ({"text": "ok words", "colour": "red"}, ["colour"]),
        ({"text": "ok words", "url": "not a url"}, ["url"]),
        ({"text": "ok words", "url": "javascript:alert(1)"}, ["url"]),
        ({"text": "ok words", "published_at": "yesterday"}, ["published_at"]),
        ({"text": "ok words", "published_at": "2024-01-21T10:00:00"}, ["published_at"]),
        ({"text": "ok words", "options": {"summary_sentences": 0}}, ["options.summary_sentences"]),
        (
            {"text": "ok words", "options": {"summary_sentences": 1, "summary_ratio": 0.5}},
            ["options.summary_ratio"],
        ),
        ({"text": "ok words", "options": {"length": 3}}, ["options.length"]),
        ({"text": "", "title": "", "source": 1}, ["source", "text", "title"]),
        ({"text": "ok words", "title": "bad\x00title"}, ["title"]),
        ({"text": "ok words", "title": "escape \x9b31m and delete \x7f"}, ["title"]),
        # Markup or boilerplate only: the analyses would read nothing.
        ({"text": "<script>Russia</script>"}, ["text"]),
        ({"text": "<style>a{color:red}</style><b>\x00</b>"}, ["text"]),
        ({"text": "Advertisement"}, ["text"]),
        # A JSON number of the right kind, not something marshmallow could turn into one.
        ({"text": "ok words", "options": {"summary_sentences": 3.5}}, ["options.summary_sentences"]),
        ({"text": "ok words", "options": {"summary_sentences": "3"}}, ["options.summary_sentences"]),
        ({"text": "ok words", "options": {"summary_ratio": "0.5"}}, ["options.summary_ratio"]),
        ({"text": "ok words", "options": {"summary_ratio": True}}, ["options.summary_ratio"]),
        ({"text": "ok words", "url": "https://example.com/a\x7fb"}, ["url"]),
    ],
)
def test_schema_violations_name_each_field(
    client: FlaskClient, store: Store, queue: ListQueue, body: Any, fields: list[str]
) -> None:
    problem = assert_problem(post(client, body), 422, "validation-error")
    assert sorted({error["field"] for error in problem["errors"]}) == fields
    assert queue.article_ids(store.redis) == []


def test_body_must_be_a_json_object(client: FlaskClient) -> None:
    problem = assert_problem(post(client, ["text"]), 422, "validation-error")
    assert problem["errors"]


def test_text_over_the_configured_limit(client: FlaskClient, app: Any) -> None:
    limit = app.extensions["newsdesk"].settings.max_text_chars
    problem = assert_problem(post(client, {"text": "word " * (limit // 5 + 1)}), 422, "validation-error")
    assert problem["errors"] == [{"field": "text", "message": f"Longer than maximum length {limit}."}]


def test_every_fault_of_a_body_is_listed_at_once(client: FlaskClient, app: Any) -> None:
    # The configured bounds (text length, webhooks) are checked with the schema, not after it passes, so
    # that a client fixing the first answer is not refused a second time for what it could have known.
    limit = app.extensions["newsdesk"].settings.max_text_chars
    body = {"text": "word " * (limit // 5 + 1), "title": "", "callback_url": "https://example.com/in", "x": 1}
    problem = assert_problem(post(client, body), 422, "validation-error")
    assert (problem["title"], problem["detail"]) == (
        "The request is not valid",
        "See `errors` for each invalid field of the body.",
    )
    assert sorted(error["field"] for error in problem["errors"]) == ["callback_url", "text", "title", "x"]


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (b'{"text": "unterminated', "Unterminated string"),
        (b"", "empty"),
        (b'{"text": NaN}', "NaN is not valid JSON"),
        (b'{"text": "a", "text": "b"}', "Duplicate key"),
        (b'{"text": "\\ud800 lone"}', "surrogate"),
        (b'{"text": "caf\xe9"}', "not UTF-8"),
        (b"[" * 5000 + b"]" * 5000, "nested"),
        (b'{"a":' * 40 + b"1" + b"}" * 40, "nested"),
        (b'{"text": "ok words", "summary_sentences": ' + b"9" * 5000 + b"}", "more than 100 digits"),
    ],
)
def test_malformed_json_is_400(client: FlaskClient, data: bytes, detail: str) -> None:
    response = client.post("/v1/articles", data=data, content_type="application/json")
    problem = assert_problem(response, 400, "malformed-json")
    assert detail.lower() in problem["detail"].lower()
    if detail == "NaN is not valid JSON":
        assert problem["detail"].startswith(detail)  # not "Nan is not valid json"


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
def test_non_json_is_415(client: FlaskClient, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/v1/articles", data=json.dumps(ARTICLE), headers=headers)
    assert_problem(response, 415, "unsupported-media-type")


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_body_over_the_limit_is_413(client: FlaskClient, app: Any, declared: bool) -> None:
    limit = app.config["MAX_CONTENT_LENGTH"]
    body = json.dumps({"text": "x" * limit}).encode()
    if declared:
        response = client.post("/v1/articles", data=body, content_type="application/json")
    else:  # no Content-Length: the size is found by reading
        response = client.post(
            "/v1/articles",
            input_stream=io.BytesIO(body),
            content_type="application/json",
            headers={"Transfer-Encoding": "chunked"},
            environ_overrides={"wsgi.input_terminated": True},  # as gunicorn passes a chunked body
        )
    problem = assert_problem(response, 413, "body-too-large")
    # The same answer however the body came, naming the limit and its setting.
    assert (problem["title"], problem["detail"]) == (
        "Request body too large",
        f"The body is over {limit} bytes (NEWSDESK_MAX_BODY_BYTES).",
    )


def test_html_and_hostile_text_is_accepted_as_data(client: FlaskClient, store: Store) -> None:
    text = "<script>alert('x')</script><p>The Kremlin said {{7*7}} and '; DROP TABLE articles; --</p>"
    response = post(client, {"text": text})
    assert response.status_code == 202
    article = store.get_article(response.get_json()["id"])
    assert article is not None
    assert article.text == text


def test_many_bad_fields_get_a_short_answer(client: FlaskClient, store: Store, queue: ListQueue) -> None:
    body = {"text": "ok words", **{f"field{i}": 1 for i in range(5000)}, "x" * 10_000: 1}
    response = post(client, body)
    problem = assert_problem(response, 422, "validation-error")
    assert len(problem["errors"]) == 50
    assert "The first 50 of 5001 errors are listed." in problem["detail"]
    assert len(response.data) < 10_000
    assert queue.article_ids(store.redis) == []


def test_long_field_names_are_clipped_in_errors(client: FlaskClient) -> None:
    problem = assert_problem(post(client, {"text": "ok words", "y" * 10_000: 1}), 422, "validation-error")
    assert [len(error["field"]) for error in problem["errors"]] == [200]
    assert problem["errors"][0]["field"].endswith("…")


def test_unknown_route_and_method(client: FlaskClient) -> None:
    assert_problem(client.get("/v1/nothing"), 404, "not-found")
    assert_problem(client.get("/v1//articles"), 404, "not-found")  # no HTML redirect to the merged path
    assert_problem(client.delete("/v1/articles"), 405, "method-not-allowed")
    assert_problem(client.post("/v1/nothing", data=b"x", content_type="text/plain"), 404, "not-found")


def test_security_headers_on_every_response(client: FlaskClient) -> None:
    for response in (client.get("/healthz"), client.get("/v1/articles/nope"), post(client, ARTICLE)):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(("extra", "status"), [(0, 202), (1, 413)])
def test_chunked_body_of_exactly_the_limit_is_taken(
    client: FlaskClient, app: Any, extra: int, status: int
) -> None:
    limit = app.config["MAX_CONTENT_LENGTH"]
    body = json.dumps(ARTICLE).encode().ljust(limit + extra)  # JSON allows the trailing spaces
    # As gunicorn passes a chunked body: no Content-Length, the input ends where the body does.
    response = client.post(
        "/v1/articles",
        input_stream=io.BytesIO(body),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == status


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("2024-01-21T10:00:00Z", "2024-01-21T10:00:00.000Z"),
        ("2024-01-21T10:00:00+00:00", "2024-01-21T10:00:00.000Z"),
        ("2024-01-21T10:00:00+02:00", "2024-01-21T08:00:00.000Z"),
        ("2024-01-21T01:30:00-05:30", "2024-01-21T07:00:00.000Z"),
        ("2024-01-21T10:00:00.123456+00:00", "2024-01-21T10:00:00.123Z"),  # cut to milliseconds
        ("2024-01-21T10:00Z", "2024-01-21T10:00:00.000Z"),
        ("2024-01-01T00:30:00+01:00", "2023-12-31T23:30:00.000Z"),  # the UTC day is another day
    ],
)
def test_published_at_comes_back_in_utc_with_milliseconds(
    client: FlaskClient, given: str, stored: str
) -> None:
    article_id = post(client, {**ARTICLE, "published_at": given}).get_json()["id"]
    view = client.get(f"/v1/articles/{article_id}").get_json()
    assert view["published_at"] == stored
    assert view["created_at"].endswith("Z")  # the form it shares with the API's own times
    assert len(view["created_at"]) == len(stored)
    batch = client.post("/v1/batches", json={"articles": [{**ARTICLE, "published_at": given}]})
    assert batch.status_code == 202, batch.get_data(as_text=True)
    batch_article = batch.get_json()["items"][0]["id"]
    assert client.get(f"/v1/articles/{batch_article}").get_json()["published_at"] == stored


@pytest.mark.parametrize(
    "given",
    [
        "2024-01-21T10:00:00",  # no time zone: whose ten o'clock is unknown, so it is refused, not guessed
        "2024-01-21",
        "0001-01-01T00:00:00+01:00",  # before the year 1 in UTC: no time the API can write
        "9999-12-31T23:30:00-01:00",  # after the year 9999 in UTC
    ],
)
def test_published_at_that_has_no_utc_form_is_422(client: FlaskClient, store: Store, given: str) -> None:
    problem = assert_problem(post(client, {**ARTICLE, "published_at": given}), 422, "validation-error")
    assert [error["field"] for error in problem["errors"]] == ["published_at"]
    batch = client.post("/v1/batches", json={"articles": [{**ARTICLE, "published_at": given}]})
    assert batch.status_code == 422
    assert store.list_article_ids() == []
