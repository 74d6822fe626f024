"""Submit over HTTP (the real WSGI app), analyse in a real Celery worker on a real Redis, poll for results."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from newsdesk.seeds import add_seeds, read_seeds
from newsdesk.settings import Settings
from newsdesk.store import Store
from service.app import create_app

pytestmark = pytest.mark.integration

SEEDS = Path(__file__).resolve().parents[2] / "seeds"
SEED_IDS = sorted(p.stem for p in SEEDS.glob("*.txt"))
SEED_TEXTS = {p.stem: p.read_text(encoding="utf-8") for p in SEEDS.glob("*.txt")}
WIRE_COPIES = SEED_IDS[:3]  # 000, 001, 002: edited copies of one wire story
REWRITE = SEED_IDS[3]  # 003: reuses several wire paragraphs
RELATED = SEED_IDS[4]  # 004: an earlier, different story

UNRELATED = (
    "Heavy rain flooded parts of the river valley on Tuesday, closing schools and roads. "
    "Farmers said the harvest would be late this year after the wettest autumn on record. "
    "The regional weather office expects drier conditions by the weekend, although rivers will stay high. "
    "Volunteers filled sandbags outside the town hall while engineers inspected two damaged bridges."
)


@pytest.fixture(scope="module")
def worker(start_worker: Callable[..., Any]) -> Any:
    return start_worker(concurrency=2)


@pytest.fixture(scope="module")
def seeded(live_store: Store) -> None:
    add_seeds(live_store, read_seeds(SEEDS))


@pytest.fixture(scope="module")
def api(live_settings: Settings, live_store: Store) -> FlaskClient:
    return create_app(live_settings, store=live_store).test_client()


def submit_and_wait(api: FlaskClient, body: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    response = api.post("/v1/articles", json=body)
    assert response.status_code == 202, response.get_data(as_text=True)
    location = response.headers["Location"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        article = api.get(location).get_json()
        if article["status"] in {"done", "failed"}:
            return article  # type: ignore[no-any-return]
        time.sleep(0.1)
    pytest.fail(f"{location} not finished after {timeout} s: {article}")


@pytest.fixture(scope="module")
def seed_results(api: FlaskClient, worker: Any, seeded: None) -> dict[str, dict[str, Any]]:
    return {
        seed_id: submit_and_wait(api, {"text": SEED_TEXTS[seed_id], "title": seed_id}) for seed_id in SEED_IDS
    }


def matches(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {match["seed_id"]: match for match in result["duplicates"]["matches"]}


@pytest.mark.parametrize("seed_id", SEED_IDS)
def test_each_seed_is_fully_analysed(seed_results: dict[str, dict[str, Any]], seed_id: str) -> None:
    result = seed_results[seed_id]
    text = SEED_TEXTS[seed_id]
    assert result["status"] == "done"
    for name in ("summary", "stance", "duplicates"):
        assert result[name]["status"] == "done"
        assert result[name]["version"]
    sentences = result["summary"]["sentences"]
    assert len(sentences) == 3
    assert all(text[s["start"] : s["end"]] == s["text"] for s in sentences)
    assert [s["start"] for s in sentences] == sorted(s["start"] for s in sentences)


@pytest.mark.parametrize("seed_id", SEED_IDS)
def test_a_copy_of_a_seed_finds_that_seed(seed_results: dict[str, dict[str, Any]], seed_id: str) -> None:
    found = matches(seed_results[seed_id])
    assert found[seed_id]["verdict"] == "duplicate"
    assert found[seed_id]["similarity"] >= 0.99
    assert seed_results[seed_id]["duplicates"]["is_duplicate"] is True
    best = seed_results[seed_id]["duplicates"]["matches"][0]
    assert best["seed_id"] == seed_id  # sorted best first


@pytest.mark.parametrize("seed_id", WIRE_COPIES)
def test_wire_copies_match_each_other_as_duplicates(
    seed_results: dict[str, dict[str, Any]], seed_id: str
) -> None:
    found = matches(seed_results[seed_id])
    for other in WIRE_COPIES:
        assert found[other]["verdict"] == "duplicate", (seed_id, other, found.get(other))
    assert found[REWRITE]["verdict"] == "partial"
    assert RELATED not in found


def test_rewrite_is_partial_against_the_wire_copies(seed_results: dict[str, dict[str, Any]]) -> None:
    found = matches(seed_results[REWRITE])
    assert set(found) == {REWRITE, *WIRE_COPIES}
    for wire in WIRE_COPIES:
        match = found[wire]
        assert match["verdict"] == "partial"
        assert match["shared_passages"]
        seed_text = SEED_TEXTS[wire]
        for passage in match["shared_passages"]:
            ours = SEED_TEXTS[REWRITE][passage["start"] : passage["end"]]
            theirs = seed_text[passage["seed_start"] : passage["seed_end"]]
            assert len(ours.split()) >= 5
            assert len(theirs.split()) >= 5


def test_related_story_matches_only_itself(seed_results: dict[str, dict[str, Any]]) -> None:
    assert set(matches(seed_results[RELATED])) == {RELATED}


def test_stance_facts_on_the_seeds(seed_results: dict[str, dict[str, Any]]) -> None:
    for seed_id, result in seed_results.items():
        targets = result["stance"]["targets"]
        text = SEED_TEXTS[seed_id]
        assert (targets["un"]["label"] == "not_mentioned") == (seed_id == RELATED)
        for key, target in targets.items():
            if target["label"] == "not_mentioned":
                assert target["mentions"] == 0
                assert not target["evidence"]
                continue
            assert key != "un" or seed_id != RELATED
            assert target["mentions"] >= 1
            for evidence in target["evidence"]:
                assert text[evidence["start"] : evidence["end"]] == evidence["text"]
                for mention in evidence["mentions"]:
                    assert text[mention["start"] : mention["end"]] == mention["text"]


def test_a_state_named_only_as_a_place_is_not_given_the_sentences_sentiment(
    api: FlaskClient, worker: Any, seeded: None
) -> None:
    # Written for this test. The model alone calls it positive toward Russia (the investors' delight).
    text = "Sales of the new phone in Russia rose sharply, delighting investors."
    result = submit_and_wait(api, {"text": text})
    assert result["stance"]["version"].endswith("+targets-1")
    russia = result["stance"]["targets"]["russia"]
    assert russia["label"] == "neutral"
    ((mention,),) = [evidence["mentions"] for evidence in russia["evidence"]]
    assert mention == {"text": "Russia", "start": 26, "end": 32, "kind": "name", "incidental": "place"}


def test_unrelated_news_has_no_matches(api: FlaskClient, worker: Any, seeded: None) -> None:
    result = submit_and_wait(api, {"text": UNRELATED, "options": {"summary_sentences": 2}})
    assert result["status"] == "done"
    assert result["duplicates"]["is_duplicate"] is False
    assert result["duplicates"]["matches"] == []
    assert result["duplicates"]["seeds_checked"] >= len(SEED_IDS)
    assert {t["label"] for t in result["stance"]["targets"].values()} == {"not_mentioned"}
    assert len(result["summary"]["sentences"]) == 2


def test_html_submission_offsets_point_into_the_html(api: FlaskClient, worker: Any, seeded: None) -> None:
    paragraphs = [p for p in SEED_TEXTS[WIRE_COPIES[0]].split("\n\n") if p.strip()]
    html = (
        "<html><body><nav>Home | World</nav>" + "".join(f"<p>{p}</p>" for p in paragraphs) + "</body></html>"
    )
    result = submit_and_wait(api, {"text": html})
    assert matches(result)[WIRE_COPIES[0]]["verdict"] == "duplicate"
    for sentence in result["summary"]["sentences"]:
        assert (
            sentence["text"] in html[sentence["start"] : sentence["end"]]
            or "<" in html[sentence["start"] : sentence["end"]]
        )
        assert not sentence["text"].startswith("<")


def test_a_seed_added_over_http_is_used_by_the_next_check(
    api: FlaskClient, worker: Any, seeded: None
) -> None:
    seed_text = UNRELATED + " A reporter at the scene counted forty houses with flooded cellars."
    created = api.post("/v1/seeds", json={"id": "flood-story", "text": seed_text})
    assert created.status_code == 201
    result = submit_and_wait(api, {"text": seed_text})
    assert matches(result)["flood-story"]["similarity"] >= 0.99


@pytest.mark.parametrize(
    ("request_kwargs", "status"),
    [
        ({"data": b"{bad json", "content_type": "application/json"}, 400),
        ({"data": b"text=hello", "content_type": "application/x-www-form-urlencoded"}, 415),
        ({"json": {"text": ""}}, 422),
        ({"json": {"text": "Words.", "extra": 1}}, 422),
        ({"data": b'{"text": "' + b"x" * 1_100_000 + b'"}', "content_type": "application/json"}, 413),
    ],
)
def test_errors_against_the_real_stack(
    api: FlaskClient, live_store: Store, request_kwargs: dict[str, Any], status: int
) -> None:
    before = live_store.list_article_ids(limit=10_000)
    response = api.post("/v1/articles", **request_kwargs)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    assert live_store.list_article_ids(limit=10_000) == before  # nothing stored
    assert api.get("/v1/articles/does-not-exist").status_code == 404
