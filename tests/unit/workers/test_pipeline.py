"""The work behind each task: load the article, analyse it, store the result (store over fakeredis)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.client
from kombu.exceptions import OperationalError

from newsdesk.seeds import add_seeds, read_seeds
from newsdesk.settings import Settings
from newsdesk.store import ANALYSES, NewArticle, Store, write_token
from tests.lost_reply import RUN_WRITES, LosingFirstReply, lose_first_replies
from workers.analysis import duplicates
from workers.analysis.stance import LexiconScorer
from workers.pipeline import Analyzers, RunOutcome, patiently, run_analyses, run_analysis

SEEDS = Path(__file__).resolve().parents[3] / "seeds"
WIRE = SEEDS / "000_9e29d44066a107d1.txt"


@pytest.fixture
def analyzers(settings: Settings, store: Store) -> Analyzers:
    return Analyzers(settings, store, scorer=LexiconScorer())


def test_all_three_analyses_finish_the_article(store: Store, analyzers: Analyzers) -> None:
    add_seeds(store, read_seeds(SEEDS))
    text = WIRE.read_text(encoding="utf-8")
    article_id = store.create_article(NewArticle(text=text, options={"summary_sentences": 2})).article_id
    assert run_analysis(store, analyzers, article_id, "summary") == "running"
    assert run_analysis(store, analyzers, article_id, "stance") == "running"
    assert run_analysis(store, analyzers, article_id, "duplicates") == "done"
    article = store.get_article(article_id)
    assert article is not None
    summary, stance, duplicates = (article.analyses[n] for n in ("summary", "stance", "duplicates"))
    assert len(summary.result["sentences"]) == 2  # type: ignore[index]
    assert summary.version == "summary-3"
    assert stance.version == "stance-6+vader-3.3.2"
    assert set(stance.result["targets"]) == {"us", "russia", "un"}  # type: ignore[index]
    assert duplicates.result["matches"][0]["seed_id"] == WIRE.stem  # type: ignore[index]
    assert duplicates.result["seeds_checked"] == 5  # type: ignore[index]


def test_redelivery_does_not_redo_or_duplicate(store: Store, analyzers: Analyzers) -> None:
    article_id = store.create_article(NewArticle(text=WIRE.read_text(encoding="utf-8"))).article_id
    run_analysis(store, analyzers, article_id, "summary")
    first = store.get_article(article_id)
    assert run_analysis(store, analyzers, article_id, "summary") is None  # already done: skipped
    again = store.get_article(article_id)
    assert first is not None
    assert again is not None
    assert again.analyses["summary"].result == first.analyses["summary"].result
    assert again.analyses["summary"].finished_at == first.analyses["summary"].finished_at


def test_an_analysis_error_fails_that_analysis_with_a_reason(store: Store, settings: Settings) -> None:
    class BrokenScorer:
        version = "broken"

        def predict(self, items: object) -> object:
            raise ValueError("model file unreadable")

    analyzers = Analyzers(settings, store, scorer=BrokenScorer())  # type: ignore[arg-type]
    article_id = store.create_article(NewArticle(text="Russia and the UN met.")).article_id
    run_analysis(store, analyzers, article_id, "stance")
    article = store.get_article(article_id)
    assert article is not None
    assert article.analyses["stance"].status == "failed"
    assert article.analyses["stance"].error == "stance analysis failed (ValueError)"
    assert "model file" not in (article.analyses["stance"].error or "")  # no internals in results


class TimeUp(Exception):
    """Stands for the runner's time limit (Celery's SoftTimeLimitExceeded, an Exception too)."""


def test_an_interruption_leaves_the_analysis_started_for_a_retry(store: Store, settings: Settings) -> None:
    class SlowScorer:
        version = "slow"

        def predict(self, items: object) -> object:
            raise TimeUp

    slow = Analyzers(settings, store, scorer=SlowScorer())  # type: ignore[arg-type]
    article_id = store.create_article(NewArticle(text=WIRE.read_text(encoding="utf-8"))).article_id
    for attempt in range(1, 4):
        with pytest.raises(TimeUp):
            run_analyses(
                store, slow, article_id, ["summary", "stance", "duplicates"], interruptions=(TimeUp,)
            )
        article = store.get_article(article_id)
        assert article is not None
        stance = article.analyses["stance"]
        assert (stance.status, stance.attempts) == ("running", attempt)  # counted, not failed
        assert article.analyses["summary"].status == "done"  # kept, and not redone on the retry
        assert article.analyses["duplicates"].status == "queued"

    # The attempt limit ends it: the fourth start fails the analysis without running it.
    run_analyses(store, slow, article_id, ["summary", "stance", "duplicates"], interruptions=(TimeUp,))
    article = store.get_article(article_id)
    assert article is not None
    assert article.analyses["stance"].status == "failed"
    assert "gave up after 3 attempts" in (article.analyses["stance"].error or "")
    assert article.status == "failed"
    assert article.analyses["duplicates"].status == "done"


def test_a_deleted_article_is_skipped(store: Store, analyzers: Analyzers) -> None:
    assert run_analysis(store, analyzers, "gone", "summary") is None
    assert store.get_article("gone") is None


def test_a_seed_added_later_is_seen_by_the_next_check(store: Store, analyzers: Analyzers) -> None:
    text = WIRE.read_text(encoding="utf-8")
    first = store.create_article(NewArticle(text=text)).article_id
    run_analysis(store, analyzers, first, "duplicates")
    assert store.get_article(first).analyses["duplicates"].result["matches"] == []  # type: ignore[union-attr,index]
    add_seeds(store, read_seeds(SEEDS))
    second = store.create_article(NewArticle(text=text)).article_id
    run_analysis(store, analyzers, second, "duplicates")
    assert store.get_article(second).analyses["duplicates"].result["matches"]  # type: ignore[union-attr,index]


def test_stale_sketches_are_renewed_from_the_seed_text(store: Store, analyzers: Analyzers) -> None:
    add_seeds(store, read_seeds(SEEDS))
    store.replace_sketches({WIRE.stem: b"an older sketch format"})
    text = WIRE.read_text(encoding="utf-8")
    article_id = store.create_article(NewArticle(text=text)).article_id
    run_analysis(store, analyzers, article_id, "duplicates")
    result = store.get_article(article_id).analyses["duplicates"].result  # type: ignore[union-attr]
    assert result["matches"][0]["seed_id"] == WIRE.stem  # type: ignore[index]
    _, sketches = store.seed_sketches_since(0)
    assert dict(sketches)[WIRE.stem] == duplicates.sketch(text)


def test_one_run_does_every_analysis_and_reads_the_article_once(
    store: Store, analyzers: Analyzers, monkeypatch: pytest.MonkeyPatch
) -> None:
    article_id = store.create_article(
        NewArticle(text=WIRE.read_text(encoding="utf-8"), callback_url="https://hooks.example.com/x")
    ).article_id
    reads: list[str] = []
    start_and_read = store.start_analysis_and_read

    def counted(wanted: str, name: str, worker: str = "", *, token: str | None = None) -> object:
        reads.append(name)
        return start_and_read(wanted, name, worker, token=token)

    monkeypatch.setattr(store, "start_analysis_and_read", counted)
    monkeypatch.setattr(store, "get_article", lambda _: pytest.fail("a read of its own"))
    outcome = run_analyses(store, analyzers, article_id, ["summary", "duplicates", "stance"])
    assert outcome == RunOutcome("done", "https://hooks.example.com/x")
    assert reads == ["summary"]  # the first start reads the article in the same round trip
    monkeypatch.undo()
    article = store.get_article(article_id)
    assert article is not None
    assert {state.status for state in article.analyses.values()} == {"done"}
    # A redelivered message finds everything done: nothing runs again, no result is stored again.
    again = run_analyses(store, analyzers, article_id, ["summary", "duplicates", "stance"])
    assert again.status is None
    after = store.get_article(article_id)
    assert after is not None
    for name, state in article.analyses.items():
        assert (after.analyses[name].result, after.analyses[name].finished_at) == (
            state.result,
            state.finished_at,
        )


def test_a_failing_analysis_keeps_the_results_before_and_after_it(store: Store, settings: Settings) -> None:
    class BrokenScorer:
        version = "broken"

        def predict(self, items: object) -> object:
            raise ValueError("model file unreadable")

    broken = Analyzers(settings, store, scorer=BrokenScorer())  # type: ignore[arg-type]
    article_id = store.create_article(NewArticle(text=WIRE.read_text(encoding="utf-8"))).article_id
    assert run_analyses(store, broken, article_id, ["summary", "stance", "duplicates"]).status == "failed"
    article = store.get_article(article_id)
    assert article is not None
    statuses = {name: state.status for name, state in article.analyses.items()}
    assert statuses == {"summary": "done", "stance": "failed", "duplicates": "done"}


def test_a_run_of_three_analyses_takes_four_round_trips(
    store: Store, analyzers: Analyzers, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = WIRE.read_text(encoding="utf-8")
    # A first article loads the scripts into Redis (on its first EVALSHA of each, NOSCRIPT: then SCRIPT LOAD).
    run_analyses(
        store, analyzers, store.create_article(NewArticle(text=text)).article_id, ["summary", "stance"]
    )
    article_id = store.create_article(NewArticle(text=text + " Again.")).article_id
    this_thread = threading.get_ident()
    trips: list[str] = []

    def counting(method: Callable[..., Any], label: str) -> Callable[..., Any]:
        def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() == this_thread:  # not the metrics flusher
                trips.append(label if label != "command" else str(args[0]))
            return method(self, *args, **kwargs)

        return counted

    monkeypatch.setattr(redis.Redis, "execute_command", counting(redis.Redis.execute_command, "command"))
    monkeypatch.setattr(redis.client.Pipeline, "execute", counting(redis.client.Pipeline.execute, "pipeline"))
    monkeypatch.setattr(
        redis.client.Pipeline,
        "immediate_execute_command",
        counting(redis.client.Pipeline.immediate_execute_command, "immediate"),
    )
    assert run_analyses(store, analyzers, article_id, ["summary", "duplicates", "stance"]).status == "done"
    # start+read, finish+start, finish+start, finish; duplicates also reads the seed log (LRANGE)
    assert sorted(trips) == sorted(["pipeline", "pipeline", "pipeline", "EVALSHA", "LRANGE"])


@pytest.mark.parametrize("flush_after", ["summary", "duplicates"])
def test_scripts_lost_by_redis_run_again_once(
    store: Store, analyzers: Analyzers, monkeypatch: pytest.MonkeyPatch, flush_after: str
) -> None:
    """A Redis restart empties its script cache: a pipelined script it no longer knows did not run, and
    runs again on its own; no analysis is started twice."""
    article_id = store.create_article(NewArticle(text=WIRE.read_text(encoding="utf-8"))).article_id
    store.redis.script_flush()  # before the first start and read
    compute = analyzers.get

    def flushing(name: str) -> Callable[[Any], Any]:
        def run(article: Any) -> Any:
            outcome = compute(name)(article)
            if name == flush_after:
                store.redis.script_flush()  # before this analysis's finish and the next one's start
            return outcome

        return run

    monkeypatch.setattr(analyzers, "get", flushing)
    assert run_analyses(store, analyzers, article_id, ["summary", "duplicates", "stance"]).status == "done"
    article = store.get_article(article_id)
    assert article is not None
    assert {name: state.attempts for name, state in article.analyses.items()} == {
        "summary": 1,
        "duplicates": 1,
        "stance": 1,
    }


def test_patiently_rides_out_the_outages_it_is_told_of() -> None:
    calls: list[int] = []

    def send() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("Error 111 connecting to localhost:6379. Connection refused.")
        return "sent"

    with pytest.raises(OperationalError):  # by default only the store's (redis-py's) errors are waited out
        patiently(send, within=5)
    calls.clear()
    assert patiently(send, within=5, outages=(redis.RedisError, OperationalError)) == "sent"
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(OperationalError):  # past the patience the error propagates
        patiently(send, within=0.05, outages=(OperationalError,))


def test_a_retried_write_whose_reply_was_lost_is_not_applied_again(store: Store) -> None:
    """The connection drops after Redis applied the start, before its reply: patiently's next try
    (same token) gets the same reply, and the attempt is counted once."""
    article_id = store.create_article(NewArticle(text="A.")).article_id
    start = LosingFirstReply(store.start_analysis)
    token = write_token()  # made once, before the tries
    assert patiently(lambda: start(article_id, "summary", token=token), within=5) == ("queued", 1)
    assert start.calls == 2
    assert store.get_article(article_id).analyses["summary"].attempts == 1  # type: ignore[union-attr]


def test_a_run_whose_writes_lose_their_replies_counts_each_attempt_once(
    store: Store, analyzers: Analyzers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every kind of write a run makes (start and read, finish and start, finish) has its first reply
    lost after it was applied. With one attempt allowed, an attempt counted twice would give the
    analysis up as failed after its one real attempt."""
    article_id = store.create_article(
        NewArticle(text=WIRE.read_text(encoding="utf-8"), callback_url="https://hooks.example.com/x")
    ).article_id
    lossy = lose_first_replies(store, RUN_WRITES, monkeypatch)
    names = ["summary", "duplicates", "stance"]
    outcome = run_analyses(store, analyzers, article_id, names, max_attempts=1, store_patience=5)
    assert outcome == RunOutcome("done", "https://hooks.example.com/x")
    assert [wrapper.calls for wrapper in lossy.values()] == [2, 3, 2]  # each lost reply was tried again
    article = store.get_article(article_id)
    assert article is not None
    states = {name: (state.status, state.attempts) for name, state in article.analyses.items()}
    assert states == dict.fromkeys(ANALYSES, ("done", 1))
    assert store.redis.xlen(store.results_stream) == 1  # finished once
