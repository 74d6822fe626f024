"""Counters and histograms kept in Redis, so that every process adds to the same figures.

The API runs as several gunicorn processes (in one or several containers) and the workers as several
Celery processes, each in its own container; Prometheus scrapes one API process at a time. Figures kept
in process memory would show one process's share, differently at each scrape. Here every process adds
to one hash per metric in Redis, and `/metrics` (service/metrics.py) reads the totals back, whichever API
process answers.

A round trip per event would cost a request a good share of its CPU, so each process adds its events up
in memory and a background thread writes the sums about once a second (FLUSH_INTERVAL), in one
MULTI/EXEC, and once more at exit. A scrape writes its own process's sums first, so the figures lag the
events by at most about a second. The thread is started by the first event of each process (a thread
does not survive a fork, and a forked child forgets its parent's unwritten sums: the parent writes
those).

Recording never raises and never waits on Redis. Sums that cannot be written (Redis down) are kept, one
per series, and written with the next successful flush. A process killed outright (SIGKILL) loses the
sums it had not written: normally its last second of events.

A write can be applied while its reply is lost (the connection drops first); redis-py then sends it
again, and a failed flush is tried again later. So each write is a script that carries a token and
leaves a receipt under it: a write whose receipt is there was applied already, and adds nothing twice.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import threading
import time
import uuid
import weakref
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

log = logging.getLogger(__name__)

# Seconds between two writes of a process's sums to Redis.
FLUSH_INTERVAL = 1.0
_SEPARATOR = "\n"  # between a field's label values (JSON, so never a raw newline) and its suffix

Labels = tuple[str, ...]


# How long a write's receipt is kept: far longer than any retry of the same write.
RECEIPT_SECONDS = 600
# One flush's sums, all or none. KEYS: the receipt, then each sum's metric key. ARGV: for each sum its
# field, amount and kind ('i': a count, HINCRBY; 'f': a sum of values, HINCRBYFLOAT). 1 if written now,
# 0 if its receipt shows it was written before.
_WRITE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 2, #KEYS do
  local field, amount, kind = ARGV[3 * i - 5], ARGV[3 * i - 4], ARGV[3 * i - 3]
  if kind == 'i' then
    redis.call('HINCRBY', KEYS[i], field, amount)
  else
    redis.call('HINCRBYFLOAT', KEYS[i], field, amount)
  end
end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[#ARGV])
return 1
"""


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
        self._lock = threading.Lock()
        self._sums: dict[tuple[str, str], float] = {}  # (metric, field) -> amount not yet written
        # A write that failed, perhaps after Redis applied it: its token and sums, sent again as they were
        # (the receipt tells whether it was applied) before anything newer.
        self._unconfirmed: tuple[str, dict[tuple[str, str], float]] | None = None
        self._failing = False  # the last flush failed: an outage is logged once, not at every retry
        self._write = client.register_script(_WRITE)
        _RECORDERS.add(self)

    def key(self, metric: str) -> str:
        return f"{self.prefix}:metrics:{metric}"

    def record(self, *updates: Sequence[Update]) -> None:
        """Add the updates (from `.inc()` / `.observe()`) to the sums the flusher writes; never raises."""
        with self._lock:
            for group in updates:
                for update in group:
                    series = (update.metric, update.field)
                    self._sums[series] = self._sums.get(series, 0) + update.amount
            _UNWRITTEN.add(self)
        _start_flusher()

    def flush(self) -> bool:
        """Write the sums recorded so far; False (and kept for the next flush) when Redis cannot be
        reached. Never raises."""
        with self._lock:
            sums, self._sums = self._sums, {}
            unconfirmed, self._unconfirmed = self._unconfirmed, None
            _UNWRITTEN.discard(self)  # back by the next record(), or below if this write fails
        writes = [unconfirmed] if unconfirmed else []
        if sums:
            writes.append((uuid.uuid4().hex, sums))
        for index, (token, batch) in enumerate(writes):
            try:
                self._write_once(token, batch)
            except redis.RedisError as error:
                with self._lock:
                    self._unconfirmed = (token, batch)
                    for _, later in writes[index + 1 :]:  # never sent: back with the new sums
                        for series, amount in later.items():
                            self._sums[series] = self._sums.get(series, 0) + amount
                    _UNWRITTEN.add(self)
                if not self._failing:
                    log.warning(
                        "metrics not written, kept for the next try", extra={"error": type(error).__name__}
                    )
                self._failing = True
                return False
        self._failing = False
        return True

    def _write_once(self, token: str, sums: Mapping[tuple[str, str], float]) -> None:
        """Add `sums` to the metrics in one script, unless the receipt of `token` shows it was done."""
        keys = [f"{self.prefix}:metrics-receipt:{token}"]
        args: list[str | float] = []
        for (metric, field), amount in sums.items():
            keys.append(self.key(metric))
            args += [field, amount, "i" if isinstance(amount, int) else "f"]  # counts stay integers
        self._write(keys=keys, args=[*args, RECEIPT_SECONDS])

    def forget_after_fork(self) -> None:
        """In a forked child: the parent writes the sums it had, so the child starts from none, with a
        lock that no thread of the parent can be holding."""
        self._lock = threading.Lock()
        self._sums = {}
        self._unconfirmed = None

    def read(self) -> tuple[dict[str, dict[Labels, float]], dict[str, dict[Labels, HistogramValue]]]:
        """Every counter and histogram: ({counter: {labels: total}}, {histogram: {labels: value}}).

        This process's own sums are written first; other processes' are at most FLUSH_INTERVAL behind.
        """
        self.flush()
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


# Every recorder of this process (to reset them in a forked child), and those with sums to write, held
# here until they are written even when nothing else holds the recorder any more.
_RECORDERS: weakref.WeakSet[MetricsRecorder] = weakref.WeakSet()
_UNWRITTEN: set[MetricsRecorder] = set()
_flusher_pid = 0  # the process whose flusher thread runs (0: none yet)
_flusher_lock = threading.Lock()


def flush_all() -> None:
    """Write every recorder's sums now (at exit, and for tests that do not wait for the flusher)."""
    for recorder in list(_UNWRITTEN):
        recorder.flush()


def _start_flusher() -> None:
    """Start this process's flusher thread unless it runs: a forked child has none until it records."""
    global _flusher_pid  # noqa: PLW0603 - one flusher per process, whichever recorder starts it
    if _flusher_pid == os.getpid():
        return
    with _flusher_lock:
        if _flusher_pid == os.getpid():
            return
        _flusher_pid = os.getpid()
        threading.Thread(target=_flush_forever, name="metrics-flusher", daemon=True).start()


def _flush_forever() -> None:
    while True:  # a daemon thread: it ends with its process, whose exit flushes once more
        time.sleep(FLUSH_INTERVAL)
        try:
            flush_all()
        except Exception:  # a bug must not stop every later flush of the process
            log.exception("metrics flush failed")


def _forget_parent_sums() -> None:
    global _flusher_lock  # noqa: PLW0603 - a parent's thread may have held it at the fork
    _flusher_lock = threading.Lock()
    for recorder in list(_RECORDERS):
        recorder.forget_after_fork()
    _UNWRITTEN.clear()


os.register_at_fork(after_in_child=_forget_parent_sums)
atexit.register(flush_all)  # Celery's pool processes skip atexit: workers/tasks.py flushes them


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
