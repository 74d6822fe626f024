"""The sweeper and the attempt limit: stalled articles are re-queued, poison ones end failed."""

from __future__ import annotations

import time

import pytest

from newsdesk.settings import Settings
from newsdesk.store import NewArticle, Store
from workers.analysis.stance import LexiconScorer
from workers.pipeline import Analyzers, run_analysis
from workers.sweeper import Sweeper


class RecordingEnqueue:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def __call__(self, analysis: str, article_id: str) -> None:
        self.sent.append((analysis, article_id))


class FixedBroker:
    """A broker view with given queue depths and held messages."""

    def __init__(
        self, depths: dict[str, int] | None = None, held: set[tuple[str, str]] | None = None
    ) -> None:
        self.depths = depths or {"summary": 0, "stance": 0, "duplicates": 0}
        self.held_messages = held or set()

    def queue_depths(self) -> dict[str, int]:
        return self.depths

    def held(self) -> set[tuple[str, str]]:
        return self.held_messages


@pytest.fixture
def fast_settings() -> Settings:
    return Settings.from_env(
        {},
        key_prefix="unit",
        task_time_limit=0.01,
        visibility_timeout=1,
        stuck_after=0.05,
        sweep_interval=0.2,
    )


def test_pending_index_follows_progress(store: Store) -> None:
    article_id = store.create_article(NewArticle(text="Words here.")).article_id
    assert store.pending_count() == 1
    for name in ("summary", "stance", "duplicates"):
        store.finish_analysis(article_id, name, result={}, version="v")
    assert store.pending_count() == 0
    assert store.stale_articles(0) == []


def test_stalled_articles_are_requeued_once_per_interval(store: Store, fast_settings: Settings) -> None:
    enqueue = RecordingEnqueue()
    sweeper = Sweeper(store, enqueue, FixedBroker(), fast_settings)
    stalled = store.create_article(NewArticle(text="Words here.")).article_id
    store.finish_analysis(stalled, "summary", result={}, version="v")
    fresh_settings = Settings.from_env({}, key_prefix="unit", task_time_limit=10, stuck_after=60)
    assert (
        Sweeper(store, enqueue, FixedBroker(), fresh_settings).sweep_once().requeued == 0
    )  # not stalled yet
    time.sleep(0.1)
    assert sweeper.sweep_if_due() is not None
    assert sorted(enqueue.sent) == [("duplicates", stalled), ("stance", stalled)]
    assert sweeper.sweep_if_due() is None  # another sweep within the interval is skipped
    assert store.stale_articles(60) == []  # re-queuing counts as progress


def test_poison_article_is_failed_after_max_attempts(store: Store, fast_settings: Settings) -> None:
    article_id = store.create_article(NewArticle(text="Words here.")).article_id
    for _ in range(3):  # three starts that never finished: the worker died each time
        store.start_analysis(article_id, "stance")
    analyzers = Analyzers(fast_settings, store, scorer=LexiconScorer())
    assert run_analysis(store, analyzers, article_id, "stance", max_attempts=3) == "running"
    article = store.get_article(article_id)
    assert article is not None
    assert article.analyses["stance"].status == "failed"
    assert article.analyses["stance"].error is not None
    assert "gave up after 3 attempts" in article.analyses["stance"].error


def test_sweeper_gives_up_where_attempts_are_spent(store: Store, fast_settings: Settings) -> None:
    enqueue = RecordingEnqueue()
    article_id = store.create_article(NewArticle(text="Words here.")).article_id
    for name in ("summary", "duplicates"):
        store.finish_analysis(article_id, name, result={}, version="v")
    for _ in range(3):
        store.start_analysis(article_id, "stance")
    time.sleep(0.1)
    result = Sweeper(store, enqueue, FixedBroker(), fast_settings).sweep_once()
    assert (result.requeued, result.given_up) == (0, 1)
    article = store.get_article(article_id)
    assert article is not None
    assert article.status == "failed"
    assert store.pending_count() == 0


def test_a_finished_analysis_is_never_rerun(store: Store, fast_settings: Settings) -> None:
    article_id = store.create_article(NewArticle(text="Words here.")).article_id
    store.finish_analysis(article_id, "summary", result=None, version="", error="summary analysis failed (X)")
    analyzers = Analyzers(fast_settings, store, scorer=LexiconScorer())
    assert run_analysis(store, analyzers, article_id, "summary") is None
    article = store.get_article(article_id)
    assert article is not None
    assert article.analyses["summary"].status == "failed"


def test_backlogged_and_held_analyses_are_left_alone(store: Store, fast_settings: Settings) -> None:
    enqueue = RecordingEnqueue()
    article_id = store.create_article(NewArticle(text="Words here.")).article_id
    store.start_analysis(article_id, "summary")  # running, stalled: its worker is gone
    time.sleep(0.1)
    broker = FixedBroker({"summary": 0, "stance": 40, "duplicates": 0}, held={("duplicates", article_id)})
    Sweeper(store, enqueue, broker, fast_settings).sweep_once()
    # stance waits its turn in a backlog; a worker has taken the duplicates message; summary is lost
    assert enqueue.sent == [("summary", article_id)]
