"""Counters and histograms kept in Redis, so that every process adds to the same figures.

The API runs as several gunicorn processes (in one or several containers) and the workers as several
Celery processes, each in its own container; Prometheus scrapes one API process at a time. Figures kept
in process memory would show one process's share, differently at each scrape. Here every process adds
to one hash per metric in Redis (one pipelined round trip per event), and `/metrics` (service/metrics.py)
reads the totals back, whichever API process answers.

Recording never raises: an event whose figures cannot be written (Redis down) is dropped, and writes
pause for a few seconds so that requests failing on Redis do not wait on it twice.
"""

from __future__ import annotations

import json
import logging
import math
import time
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

log = logging.getLogger(__name__)

# After a failed write, skip writes for this long (seconds).
PAUSE_AFTER_FAILURE = 5.0
_SEPARATOR = "\n"  # between a field's label values (JSON, so never a raw newline) and its suffix

Labels = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Update:
    """One change to one metric: `amount` added to a hash field of the metric's key."""

    metric: str
    field: str
    amount: float


@dataclass(frozen=True, slots=True)
class CounterSpec:
    name: str  # without the _total suffix, which the exposition adds
    help: str
    labels: tuple[str, ...]

    def inc(self, *values: str, amount: int = 1) -> list[Update]:
        return [Update(self.name, _label_key(self.labels, values), amount)]


@dataclass(frozen=True, slots=True)
class HistogramSpec:
    name: str
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...]  # upper bounds, ascending; +Inf is implied

    def observe(self, value: float, *values: str) -> list[Update]:
        labels = _label_key(self.labels, values)
        value = max(0.0, float(value))  # a float, so the sum is always added with HINCRBYFLOAT
        bucket = bisect_left(self.buckets, value)  # the first bound >= value; len(buckets) is +Inf
        return [
            Update(self.name, f"{labels}{_SEPARATOR}{bucket}", 1),
            Update(self.name, f"{labels}{_SEPARATOR}sum", value),
        ]


@dataclass(frozen=True, slots=True)
class HistogramValue:
    cumulative: list[tuple[str, float]]  # (upper bound as Prometheus writes it, observations <= it)
    sum: float

    @property
    def count(self) -> float:
        return self.cumulative[-1][1]


_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUEST_DURATION = HistogramSpec(
    "newsdesk_http_request_duration_seconds",
    "Time to answer an HTTP request, by method, route template and status (all API processes)",
    ("method", "endpoint", "status"),
    _LATENCY_BUCKETS,
)
SUBMISSIONS = CounterSpec(
    "newsdesk_submissions",
    "Articles submitted (POST /v1/articles, and each article of POST /v1/batches) by outcome: accepted "
    "(stored and queued), replayed (a known Idempotency-Key), rejected (4xx), unavailable (5xx)",
    ("outcome",),
)
ANALYSIS_DURATION = HistogramSpec(
    "newsdesk_analysis_duration_seconds",
    "Time a worker spent computing one analysis of one article (successful runs), by analysis",
    ("analysis",),
    (*_LATENCY_BUCKETS, 30.0, 60.0, 120.0),
)
ANALYSIS_RESULTS = CounterSpec(
    "newsdesk_analysis_results",
    "Analysis outcomes stored, by analysis and status (done or failed)",
    ("analysis", "status"),
)
ARTICLES_FINISHED = CounterSpec(
    "newsdesk_articles_finished",
    "Articles whose last analysis finished, by the article's final status (done or failed)",
    ("status",),
)
COUNTERS = (SUBMISSIONS, ANALYSIS_RESULTS, ARTICLES_FINISHED)
HISTOGRAMS = (REQUEST_DURATION, ANALYSIS_DURATION)


def _label_key(names: Sequence[str], values: Sequence[str]) -> str:
    if len(names) != len(values):
        raise ValueError(f"expected labels {tuple(names)}, got {tuple(values)}")
    return json.dumps(list(values), separators=(",", ":"))


class MetricsRecorder:
    """Adds events to the metrics in Redis (`{prefix}:metrics:{name}` hashes) and reads the totals."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._paused_until = 0.0

    def key(self, metric: str) -> str:
        return f"{self.prefix}:metrics:{metric}"

    def record(self, *updates: Sequence[Update]) -> None:
        """Apply the updates (from `.inc()` / `.observe()`) in one round trip; never raises."""
        if time.monotonic() < self._paused_until:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for group in updates:
                for update in group:
                    if isinstance(update.amount, int):  # counts; sums are floats
                        pipe.hincrby(self.key(update.metric), update.field, update.amount)
                    else:
                        pipe.hincrbyfloat(self.key(update.metric), update.field, update.amount)
            pipe.execute()
        except redis.RedisError as error:
            self._paused_until = time.monotonic() + PAUSE_AFTER_FAILURE
            log.warning("metrics not recorded", extra={"error": type(error).__name__})

    def read(self) -> tuple[dict[str, dict[Labels, float]], dict[str, dict[Labels, HistogramValue]]]:
        """Every counter and histogram: ({counter: {labels: total}}, {histogram: {labels: value}})."""
        pipe = self.client.pipeline(transaction=False)
        for spec in (*COUNTERS, *HISTOGRAMS):
            pipe.hgetall(self.key(spec.name))
        raw: list[dict[Any, Any]] = pipe.execute()
        counters = {
            spec.name: {_labels(field): float(value) for field, value in fields.items()}
            for spec, fields in zip(COUNTERS, raw[: len(COUNTERS)], strict=True)
        }
        histograms = {
            spec.name: _histogram(spec, fields)
            for spec, fields in zip(HISTOGRAMS, raw[len(COUNTERS) :], strict=True)
        }
        return counters, histograms


def _labels(field: bytes | str) -> Labels:
    text = field.decode() if isinstance(field, bytes) else field
    return tuple(json.loads(text))


def _histogram(spec: HistogramSpec, fields: Mapping[Any, Any]) -> dict[Labels, HistogramValue]:
    per_bucket: dict[Labels, list[float]] = {}
    sums: dict[Labels, float] = {}
    for field, value in fields.items():
        text = field.decode() if isinstance(field, bytes) else field
        labels_text, _, suffix = text.rpartition(_SEPARATOR)
        labels = _labels(labels_text)
        if suffix == "sum":
            sums[labels] = float(value)
        else:
            per_bucket.setdefault(labels, [0.0] * (len(spec.buckets) + 1))[int(suffix)] = float(value)
    values: dict[Labels, HistogramValue] = {}
    bounds = [*(_bound(b) for b in spec.buckets), "+Inf"]
    for labels, counts in per_bucket.items():
        running = 0.0
        cumulative = []
        for bound, count in zip(bounds, counts, strict=True):
            running += count
            cumulative.append((bound, running))
        values[labels] = HistogramValue(cumulative, sums.get(labels, 0.0))
    return values


def _bound(value: float) -> str:
    return "+Inf" if math.isinf(value) else repr(float(value))
