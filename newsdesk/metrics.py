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
again, and a failed flush is tried again later. So each recorder numbers its writes and sends them one
at a time, in order, a failed one again before any newer; the script notes in Redis the last number it
applied for that recorder, and a write whose number is not past it adds nothing twice.
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


# How long Redis remembers a recorder's last write number after its last write: a write sent again
# after a longer outage would count twice, and a process gone for that long leaves no key behind.
RECEIPT_SECONDS = 86_400
# One flush's sums. KEYS: the recorder's receipt (its last write number), then each sum's metric key.
# ARGV: for each sum its field, amount and kind ('i': a count, HINCRBY; 'f': a sum of values,
# HINCRBYFLOAT); then the write's number and the receipt's lifetime. 1 if written now, 0 if written
# before. The kinds are checked before anything is written: Redis does not undo a script that fails
# half-way.
_WRITE = """
local number = tonumber(ARGV[#ARGV - 1])
if number <= tonumber(redis.call('GET', KEYS[1]) or '0') then return 0 end
for i = 2, #KEYS do
  local field, amount, kind = ARGV[3 * i - 5], tonumber(ARGV[3 * i - 4]), ARGV[3 * i - 3]
  local held = redis.call('HGET', KEYS[i], field)
  local counts = kind == 'i'
  local finite = amount and amount == amount and amount ~= math.huge and amount ~= -math.huge
  local addable = not held or (counts and string.match(held, '^-?%d+$')) or (not counts and tonumber(held))
  if not finite or not addable then
    return redis.error_reply('metric ' .. KEYS[i] .. ' ' .. field .. ': cannot add ' .. ARGV[3 * i - 4])
  end
end
for i = 2, #KEYS do
  local field, amount, kind = ARGV[3 * i - 5], ARGV[3 * i - 4], ARGV[3 * i - 3]
  if kind == 'i' then
    redis.call('HINCRBY', KEYS[i], field, amount)
  else
    redis.call('HINCRBYFLOAT', KEYS[i], field, amount)
  end
end
redis.call('SET', KEYS[1], number, 'EX', ARGV[#ARGV])
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
        self._write = client.register_script(_WRITE)
        self._start_afresh()
        _RECORDERS.add(self)

    def _start_afresh(self) -> None:
        """No sums, a receipt of its own (a forked child must not share its parent's numbers), new locks."""
        self._lock = threading.Lock()  # guards _sums
        self._flush_lock = threading.Lock()  # one flush at a time: writes go out one by one, in order
        self._sums: dict[tuple[str, str], float] = {}  # (metric, field) -> amount not yet written
        # A write that failed, perhaps after Redis applied it: its number and sums, sent again as they
        # were before anything newer (the receipt tells whether it was applied).
        self._unconfirmed: tuple[int, dict[tuple[str, str], float]] | None = None
        self._written = 0  # the number of the last write made
        self._receipt = f"{self.prefix}:metrics-writer:{uuid.uuid4().hex}"
        self._failing = False  # the last flush failed: an outage is logged once, not at every retry

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
        with self._flush_lock:
            if self._unconfirmed is not None and not self._send(*self._unconfirmed):
                return False
            with self._lock:
                sums, self._sums = self._sums, {}
                _UNWRITTEN.discard(self)  # back by the next record(), or by _send if this write fails
            if not sums:
                return True
            self._written += 1
            return self._send(self._written, sums)

    def _send(self, number: int, sums: dict[tuple[str, str], float]) -> bool:
        """One numbered write; on failure it is kept, as it is, to be sent again first."""
        keys = [self._receipt]
        args: list[str | float] = []
        for (metric, field), amount in sums.items():
            keys.append(self.key(metric))
            args += [field, amount, "i" if isinstance(amount, int) else "f"]  # counts stay integers
        try:
            self._write(keys=keys, args=[*args, number, RECEIPT_SECONDS])
        except redis.ResponseError as error:
            if _passing(error):
                return self._keep(number, sums, error)
            # Redis refuses these sums for good (a field that is not a count): dropped, or every later
            # write would wait behind them. The script wrote none of them.
            log.error("metrics dropped: Redis refused them", extra={"error": str(error)[:200]})
            self._unconfirmed = None
            return True
        except redis.RedisError as error:
            return self._keep(number, sums, error)
        self._unconfirmed = None
        self._failing = False
        return True

    def _keep(self, number: int, sums: dict[tuple[str, str], float], error: Exception) -> bool:
        self._unconfirmed = (number, sums)
        with self._lock:
            _UNWRITTEN.add(self)
        if not self._failing:
            log.warning("metrics not written, kept for the next try", extra={"error": type(error).__name__})
        self._failing = True
        return False

    def forget_after_fork(self) -> None:
        """In a forked child: the parent writes the sums it had, so the child starts from none, with
        locks that no thread of the parent can be holding."""
        self._start_afresh()

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


# Refusals that pass: the write is kept and sent again. A replica not yet promoted, Redis at its maxmemory;
# and, by the error code Redis puts first, writes stopped after a failed snapshot (MISCONF, a full disk:
# deploy/redis.conf saves), a busy script, too few replicas or a replica cut off from its master.
_PASSING_REFUSALS = (redis.exceptions.ReadOnlyError, redis.exceptions.OutOfMemoryError)
_PASSING_CODES = ("MISCONF", "BUSY", "NOREPLICAS", "MASTERDOWN", "TRYAGAIN")


def _passing(error: redis.ResponseError) -> bool:
    return isinstance(error, _PASSING_REFUSALS) or str(error).startswith(_PASSING_CODES)


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
