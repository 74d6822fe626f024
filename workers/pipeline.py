"""Runs one analysis of one stored article and stores its result: the work behind every task.

Knows the store and the pure analysis functions; knows nothing of Celery, so it runs the same in a
worker, in the evaluation command and in the benchmark.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, TypeVar

import redis

from newsdesk.metrics import ANALYSIS_DURATION
from newsdesk.settings import Settings
from newsdesk.store import TERMINAL, Article, Started, Store, write_token
from workers.analysis import duplicates, stance, summary
from workers.analysis.stance import SentenceScorer
from workers.analysis.text import prepare

log = logging.getLogger(__name__)
T = TypeVar("T")


def load_scorer(kind: str) -> SentenceScorer:
    """The sentence-level stance scorer a setting names (the trained model, or the lexicon), as the
    product applies it to its targets' mentions."""
    if kind == "lexicon":
        return stance.TargetMentionScorer(stance.LexiconScorer())  # VADER learnt no label mix
    from workers.analysis.stance_model import OnnxStanceModel  # noqa: PLC0415 - onnxruntime only when used

    model = OnnxStanceModel.default()
    return stance.TargetMentionScorer(model, prior=model.news_prior)


class SeedIndexCache:
    """This process's duplicate index, kept in step with the seeds in the store.

    Each check first reads the seeds added since the last one (a cheap LRANGE on the seed log), so a
    seed added through the API is seen by every worker at its next article.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.index = duplicates.SeedIndex()
        self._position = 0
        self._lock = threading.Lock()

    def refresh(self) -> duplicates.SeedIndex:
        with self._lock:
            self._position, added = self.store.seed_sketches_since(self._position)
            stale = [
                seed_id for seed_id, seed_sketch in added if not duplicates.sketch_is_current(seed_sketch)
            ]
            renewed = self._resketch(stale) if stale else {}
            for seed_id, seed_sketch in added:
                self.index.add(seed_id, renewed.get(seed_id, seed_sketch))
        return self.index

    def _resketch(self, seed_ids: list[str]) -> dict[str, bytes]:
        """Sketches stored by an older release: make them again from the seeds' texts, and store them."""
        texts = self.store.seed_texts(seed_ids)
        renewed = {seed_id: duplicates.sketch(text) for seed_id, text in texts.items()}
        self.store.replace_sketches(renewed)
        log.info("seed sketches renewed", extra={"count": len(renewed)})
        return renewed


class Analyzers:
    """The three analyses over a stored article, each returning (result, version)."""

    def __init__(self, settings: Settings, store: Store, scorer: SentenceScorer | None = None) -> None:
        self.settings = settings
        self.store = store
        self._scorer = scorer
        self.seeds = SeedIndexCache(store)
        self.thresholds = duplicates.thresholds_from(settings)

    @property
    def scorer(self) -> SentenceScorer:
        if self._scorer is None:
            self._scorer = load_scorer(self.settings.stance_scorer)
        return self._scorer

    def summary(self, article: Article) -> tuple[dict[str, Any], str]:
        sentences = article.options.get("summary_sentences")
        ratio = article.options.get("summary_ratio")
        if sentences is None and ratio is None:
            sentences = self.settings.summary_sentences
        result = summary.summarize(article.text, sentences=sentences, ratio=ratio)
        return {"sentences": [asdict(s) for s in result.sentences], "text": result.text}, summary.VERSION

    def stance(self, article: Article) -> tuple[dict[str, Any], str]:
        report = stance.analyse_stance(prepare(article.text), self.scorer)
        targets = {key: _target_block(value) for key, value in report.targets.items()}
        return {"targets": targets}, f"{stance.VERSION}+{self.scorer.version}"

    def duplicates(self, article: Article) -> tuple[dict[str, Any], str]:
        index = self.seeds.refresh()
        report = duplicates.find_duplicates(article.text, index, self.store.seed_texts, self.thresholds)
        return {
            "is_duplicate": report.is_duplicate,
            "matches": [asdict(match) for match in report.matches],
            "seeds_checked": len(index),
        }, duplicates.VERSION

    def get(self, name: str) -> Callable[[Article], tuple[dict[str, Any], str]]:
        analyses: dict[str, Callable[[Article], tuple[dict[str, Any], str]]] = {
            "summary": self.summary,
            "stance": self.stance,
            "duplicates": self.duplicates,
        }
        return analyses[name]


def _target_block(value: stance.TargetStance) -> dict[str, Any]:
    block = asdict(value)
    for item in block["evidence"]:
        for mention in item["mentions"]:
            del mention["target"]  # implied by the block it sits in
    return block


def give_up_reason(name: str, attempts: int) -> str:
    return (
        f"{name} analysis gave up after {attempts} attempts: each one stopped its worker "
        "(a crash, or the time limit) before it finished"
    )


def patiently(
    operation: Callable[[], T], *, within: float, outages: tuple[type[Exception], ...] = (redis.RedisError,)
) -> T:
    """Run a store operation, retrying through a Redis outage of up to `within` seconds.

    In-process, because the usual Celery retry publishes a new message through the broker: the very
    Redis that is down. Past `within` the error propagates and the sweeper recovers the article.
    `outages` are the errors that mean Redis is unreachable (a send through the broker adds kombu's).

    A try can fail after its write was applied (the reply was lost), so a write retried here carries a
    token made once, before this call (store.write_token()): its next try is then recognised as the
    same write, and returns the first one's outcome instead of applying it again.
    """
    deadline = time.monotonic() + within
    delay = 0.1
    while True:
        try:
            return operation()
        except outages as error:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("store unavailable, retrying", extra={"error": type(error).__name__, "in_s": delay})
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


@dataclass(frozen=True)
class RunOutcome:
    status: str | None  # the article's status after the last result this run stored; None if none
    callback_url: str | None  # the article's, when this run read it


def run_analyses(
    store: Store,
    analyzers: Analyzers,
    article_id: str,
    names: Sequence[str],
    *,
    max_attempts: int = 3,
    store_patience: float = 0.0,
    interruptions: tuple[type[BaseException], ...] = (),
) -> RunOutcome:
    """Run several analyses of one article in the given order; each result is stored as soon as it is
    ready, so a crash in a later analysis keeps the earlier ones.

    An error inside an analysis is stored as its failure, except `interruptions` (the runner's time
    limit), which propagate: the analysis stays started, its attempt counted, for the caller to retry.

    Round trips to Redis: the first start reads the article in the same one, and each finish starts the
    next analysis in its own, so n analyses take n + 1. Each analysis is still started just before it
    runs, so a crash counts against that analysis alone.
    """
    worker = _worker_name()
    article: Article | None = None
    status: str | None = None
    started: Started | None = None  # the next analysis's start, when the last finish made it
    for position, name in enumerate(names):
        following = names[position + 1] if position + 1 < len(names) else None
        context = {"article_id": article_id, "analysis": name}
        if started is None:
            token = write_token()  # one per write, kept through patiently's tries
            if article is None:
                started, article = patiently(
                    partial(store.start_analysis_and_read, article_id, name, worker, token=token),
                    within=store_patience,
                )
            else:
                started = patiently(
                    partial(store.start_analysis, article_id, name, worker, token=token),
                    within=store_patience,
                )
        if started is None or article is None:
            log.warning("article not found", extra=context)
            break
        previous, attempts = started
        if previous in TERMINAL:
            log.info("analysis already finished", extra=context)
            started = None
            continue
        outcome, duration = _outcome(analyzers, article, name, attempts, max_attempts, interruptions)
        finished, started = patiently(
            partial(_finish, store, article_id, name, outcome, following, worker, write_token()),
            within=store_patience,
        )
        status = finished or status
        if duration is not None:
            store.metrics.record(ANALYSIS_DURATION.observe(duration, name))
            log.info(
                "analysis done",
                extra={**context, "article_status": finished, "duration_ms": round(duration * 1000, 1)},
            )
        if finished is None:
            break  # deleted while it ran
    return RunOutcome(status, article.callback_url if article else None)


def run_analysis(
    store: Store,
    analyzers: Analyzers,
    article_id: str,
    name: str,
    *,
    max_attempts: int = 3,
    store_patience: float = 0.0,
) -> str | None:
    """Run one analysis of one article and store the outcome; returns the article's new status.

    Safe to run twice (a redelivered message): a finished analysis is not redone, and a result
    overwrites its own field rather than adding a second one. Store calls ride out a Redis outage of
    `store_patience` seconds; an error inside the analysis is stored as that analysis's failure.
    """
    return run_analyses(
        store, analyzers, article_id, [name], max_attempts=max_attempts, store_patience=store_patience
    ).status


def _finish(
    store: Store,
    article_id: str,
    name: str,
    outcome: dict[str, Any],
    following: str | None,
    worker: str,
    token: str,
) -> tuple[str | None, Started | None]:
    """Store an analysis's outcome, and start the following one (if any) in the same round trip."""
    if following is None:
        return store.finish_analysis(article_id, name, **outcome, token=token), None
    return store.finish_analysis_and_start(
        article_id, name, **outcome, next_name=following, worker=worker, token=token
    )


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _outcome(
    analyzers: Analyzers,
    article: Article,
    name: str,
    attempts: int,
    max_attempts: int,
    interruptions: tuple[type[BaseException], ...] = (),
) -> tuple[dict[str, Any], float | None]:
    """What to store for one started analysis: its result and version, or the reason it failed; and how
    long it took when it succeeded."""
    if attempts > max_attempts:
        log.error(
            "analysis given up", extra={"article_id": article.id, "analysis": name, "attempts": attempts}
        )
        return {"result": None, "version": "", "error": give_up_reason(name, attempts - 1)}, None
    computing = time.perf_counter()
    try:
        result, version = analyzers.get(name)(article)
    except redis.RedisError:
        raise  # reading seeds for the duplicate check: an outage, not this article's fault
    except interruptions:
        raise
    except Exception as error:
        log.exception(
            "analysis failed", extra={"article_id": article.id, "analysis": name, "attempt": attempts}
        )
        return {
            "result": None,
            "version": "",
            "error": f"{name} analysis failed ({type(error).__name__})",
        }, None
    return {"result": result, "version": version, "error": None}, time.perf_counter() - computing
