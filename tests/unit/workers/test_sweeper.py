"""The sweeper and the attempt limit: stalled articles are re-queued, poison ones end failed."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pytest

from newsdesk.settings import Settings
from newsdesk.store import NewArticle, Store
from workers.analysis.stance import LexiconScorer
from workers.pipeline import Analyzers, run_analysis
from workers.sweeper import Sweeper


class RecordingEnqueue:
    """Records (analysis, article id) for each analysis sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def __call__(self, article_id: str, analyses: Sequence[str]) -> None:
        self.sent += [(analysis, article_id) for analysis in analyses]


class FixedBroker:
    """A broker view with given queue depths, held messages and waiting messages (per queue)."""

    def __init__(
        self,
        depths: dict[str, int] | None = None,
        held: set[tuple[str, str]] | None = None,
        waiting: dict[str, set[tuple[str, str]]] | None = None,
    ) -> None:
        self.depths = depths or {"analyses": 0, "webhooks": 0}
        self.held_messages = held or set()
        self.waiting_messages = waiting or {}
        self.scanned: list[str] = []

    def queue_depths(self) -> dict[str, int]:
        return self.depths

    def held(self) -> set[tuple[str, str]]:
        return self.held_messages

    def waiting(self, queue: str) -> set[tuple[str, str]]:
        self.scanned.append(queue)
        return self.waiting_messages.get(queue, set())


def fast(**overrides: Any) -> Settings:
    """Settings with sub-second timings, so a test need not wait for an article to stall.

    They are below what may be configured (a sweep at most once a second, an analysis stuck after a
    second or more), so they are set past the range checks, which guard configuration, not test clocks.
    """
    settings = Settings.from_env({}, key_prefix="unit", **overrides)
    timings = {"task_time_limit": 0.01, "visibility_timeout": 1, "stuck_after": 0.05, "sweep_interval": 0.2}
    for name, value in timings.items():
        object.__setattr__(settings, name, value)
    return settings


@pytest.fixture
def fast_settings() -> Settings:
    return fast()


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
    split = fast(analysis_queues="stance=stance")
    broker = FixedBroker({"analyses": 0, "stance": 40, "webhooks": 0}, held={("duplicates", article_id)})
    Sweeper(store, enqueue, broker, split).sweep_once()
    # stance waits its turn in a backlog; a worker has taken the duplicates message; summary is lost
    assert enqueue.sent == [("summary", article_id)]


def test_a_backlog_on_the_shared_queue_holds_every_queued_analysis_back(
    store: Store, fast_settings: Settings
) -> None:
    enqueue = RecordingEnqueue()
    store.create_article(NewArticle(text="Words here."))
    time.sleep(0.1)
    broker = FixedBroker({"analyses": 5, "webhooks": 0})
    Sweeper(store, enqueue, broker, fast_settings).sweep_once()
    assert enqueue.sent == []
    assert broker.scanned == []  # queued analyses are judged by the depth alone: no read of the backlog


def test_a_started_analysis_whose_message_is_gone_is_requeued_despite_a_backlog(
    store: Store, fast_settings: Settings
) -> None:
    enqueue = RecordingEnqueue()
    killed = store.create_article(NewArticle(text="Words here.")).article_id
    redelivered = store.create_article(NewArticle(text="Other words here.")).article_id
    for article_id in (killed, redelivered):
        for name in ("summary", "stance", "duplicates"):
            store.start_analysis(article_id, name)
    time.sleep(0.1)
    # A hard time-limit kill acknowledged `killed`'s message; `redelivered`'s came back to the queue
    # when its worker died. Other articles keep the queue busy.
    waiting = {(name, redelivered) for name in ("summary", "stance", "duplicates")}
    broker = FixedBroker({"analyses": 30, "webhooks": 0}, waiting={"analyses": waiting})
    Sweeper(store, enqueue, broker, fast_settings).sweep_once()
    assert sorted(enqueue.sent) == sorted((name, killed) for name in ("summary", "stance", "duplicates"))
    assert broker.scanned == ["analyses"]  # read once for the whole sweep


def _finished_with_callback(store: Store) -> str:
    article_id = store.create_article(
        NewArticle(text="Words here.", callback_url="https://hooks.example.com/newsdesk")
    ).article_id
    for name in ("summary", "stance", "duplicates"):
        store.finish_analysis(article_id, name, result={}, version="v")
    assert store.webhook_state(article_id) == "due"
    return article_id


def test_webhooks_left_without_a_delivery_message_are_sent_again(
    store: Store, fast_settings: Settings
) -> None:
    dispatched: list[str] = []
    resent: list[str] = []

    def dispatch(article_id: str) -> None:  # what the worker's dispatch does: claim, then send
        assert store.move_webhook(article_id, "due", "queued")
        dispatched.append(article_id)

    never_dispatched = _finished_with_callback(store)  # its dispatch failed: still due
    claimed_not_sent = _finished_with_callback(store)  # its worker died between claim and send
    assert store.move_webhook(claimed_not_sent, "due", "queued")
    held_by_a_worker = _finished_with_callback(store)  # a retry waiting in a worker: not lost
    assert store.move_webhook(held_by_a_worker, "due", "queued")
    delivered = _finished_with_callback(store)
    store.record_webhook(delivered, "delivered", 1)
    broker = FixedBroker(held={("webhooks.deliver", held_by_a_worker)})
    sweeper = Sweeper(
        store, RecordingEnqueue(), broker, fast_settings, on_finished=dispatch, resend_webhook=resent.append
    )
    time.sleep(0.1)

    result = sweeper.sweep_once()
    assert dispatched == [never_dispatched]
    assert resent == [claimed_not_sent]
    assert result.webhooks_resent == 2
    assert sweeper.sweep_once().webhooks_resent == 0  # sending again restarts their clocks
    assert {article_id for article_id, _ in store.stale_webhooks(0)} == {
        never_dispatched,
        claimed_not_sent,
        held_by_a_worker,
    }  # the delivered one left the watch list


def _sending_to(sent: list[str], store: Store, broker: FixedBroker, settings: Settings) -> Sweeper:
    """A sweeper whose webhook dispatches and re-sends are recorded in `sent`."""
    return Sweeper(
        store, RecordingEnqueue(), broker, settings, on_finished=sent.append, resend_webhook=sent.append
    )


def test_a_webhook_backlog_is_not_doubled_and_gone_articles_leave_the_watch_list(
    store: Store, fast_settings: Settings
) -> None:
    resent: list[str] = []
    queued = _finished_with_callback(store)
    assert store.move_webhook(queued, "due", "queued")
    deleted = _finished_with_callback(store)
    assert store.delete_article(deleted, owner="")
    backlog = FixedBroker({"webhooks": 25}, waiting={"webhooks": {("webhooks.deliver", queued)}})
    sweeper = _sending_to(resent, store, backlog, fast_settings)
    time.sleep(0.1)
    assert sweeper.sweep_once().webhooks_resent == 0  # its message is waiting its turn
    assert resent == []
    assert store.stale_webhooks(0) == [(queued, "queued")]


def test_a_webhook_backlog_does_not_hide_a_lost_delivery(store: Store, fast_settings: Settings) -> None:
    resent: list[str] = []
    waiting_its_turn = _finished_with_callback(store)
    lost = _finished_with_callback(store)  # claimed, then its message was lost
    for article_id in (waiting_its_turn, lost):
        assert store.move_webhook(article_id, "due", "queued")
    broker = FixedBroker({"webhooks": 25}, waiting={"webhooks": {("webhooks.deliver", waiting_its_turn)}})
    sweeper = _sending_to(resent, store, broker, fast_settings)
    time.sleep(0.1)
    assert sweeper.sweep_once().webhooks_resent == 1
    assert resent == [lost]
