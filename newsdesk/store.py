"""The Redis data layer: articles with their analysis results, idempotency keys, and the seed corpus.

The store is the single source of truth for polling. Every multi-step change runs as one Lua script,
so readers never see an article half-written and two workers finishing at once agree on its status.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.typing import EncodableT, FieldT

from newsdesk.metrics import ANALYSIS_RESULTS, ARTICLES_FINISHED, MetricsRecorder
from newsdesk.settings import Settings

ANALYSES = ("summary", "stance", "duplicates")
ArticleStatus = Literal["queued", "running", "done", "failed"]
AnalysisStatus = Literal["queued", "running", "done", "failed"]
_METADATA_FIELDS = ("title", "url", "source", "published_at")


class IdempotencyConflict(Exception):
    """An Idempotency-Key was reused with a different request body."""

    def __init__(self, article_id: str) -> None:
        super().__init__(article_id)
        self.article_id = article_id


@dataclass(frozen=True, slots=True)
class NewArticle:
    text: str
    title: str | None = None
    url: str | None = None
    source: str | None = None
    published_at: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    owner: str = ""  # the API key's name; "" when the API runs without keys


@dataclass(frozen=True, slots=True)
class AnalysisState:
    status: AnalysisStatus
    result: dict[str, Any] | None
    version: str | None
    error: str | None
    attempts: int
    started_at: str | None
    finished_at: str | None
    worker: str | None = None  # "host:pid" of the process that last started it


@dataclass(frozen=True, slots=True)
class Article:
    id: str
    status: ArticleStatus
    text: str
    metadata: dict[str, str]
    options: dict[str, Any]
    created_at: str
    updated_at: str
    finished_at: str | None
    analyses: dict[str, AnalysisState]
    owner: str = ""


@dataclass(frozen=True, slots=True)
class Seed:
    id: str
    text: str
    title: str | None = None
    source: str | None = None
    added_at: str | None = None


@dataclass(frozen=True, slots=True)
class Submission:
    article_id: str
    created: bool  # False when an Idempotency-Key matched an earlier submission


def connect(settings: Settings) -> redis.Redis:
    """A client that gives up quickly when Redis is unreachable, so the API can answer 503 at once."""
    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout * 5,
        socket_connect_timeout=settings.redis_timeout / 2,
        # One immediate retry replaces a connection that died with a Redis restart; more would only
        # delay the 503 that tells the client to come back.
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def content_digest(payload: Mapping[str, Any]) -> str:
    """A stable digest of a request body, to tell a retry from a different request."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


# Creates the article, its listing entry and its place among the unfinished articles, or returns the
# article an Idempotency-Key already names. KEYS: article, articles, pending[, idempotency key].
_CREATE = """
if #KEYS == 4 then
  local existing = redis.call('GET', KEYS[4])
  if existing then return {0, existing} end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
if #KEYS == 4 then redis.call('SET', KEYS[4], ARGV[1] .. '|' .. ARGV[3], 'EX', ARGV[4]) end
return {1, ARGV[1] .. '|' .. ARGV[3]}
"""

# Marks one analysis running and counts the attempt; returns its previous status and the attempts so
# far. Nothing for a missing article. KEYS: article, pending.
# ARGV: id, analysis, now (ISO), now (ms), the worker process ("host:pid").
_START = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local name = ARGV[2]
local previous = redis.call('HGET', KEYS[1], name .. ':status')
local attempts = redis.call('HINCRBY', KEYS[1], name .. ':attempts', 1)
if previous ~= 'done' and previous ~= 'failed' then
  redis.call('HSET', KEYS[1], name .. ':status', 'running', name .. ':started_at', ARGV[3],
             name .. ':worker', ARGV[5], 'updated_at', ARGV[3])
  if redis.call('HGET', KEYS[1], 'status') == 'queued' then
    redis.call('HSET', KEYS[1], 'status', 'running')
  end
  redis.call('ZADD', KEYS[2], 'XX', ARGV[4], ARGV[1])
end
return {previous, attempts}
"""

# Stores one analysis's outcome (overwriting any earlier one, so a redelivered task never appends) and
# derives the article's status from all of them in the same step. KEYS: article, pending.
# ARGV: id, analysis, status, result, version, error, now (ISO), now (ms), every analysis name...
_FINISH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local name, now = ARGV[2], ARGV[7]
redis.call('HSET', KEYS[1], name .. ':status', ARGV[3], name .. ':result', ARGV[4],
           name .. ':version', ARGV[5], name .. ':error', ARGV[6], name .. ':finished_at', now,
           'updated_at', now)
local terminal, failed, started = true, false, false
for i = 9, #ARGV do
  local status = redis.call('HGET', KEYS[1], ARGV[i] .. ':status')
  if status == 'failed' then failed = true end
  if status ~= 'done' and status ~= 'failed' then terminal = false end
  if status ~= 'queued' then started = true end
end
local overall = 'queued'
if terminal then
  overall = failed and 'failed' or 'done'
  redis.call('HSET', KEYS[1], 'finished_at', now)
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  if started then overall = 'running' end
  redis.call('ZADD', KEYS[2], 'XX', ARGV[8], ARGV[1])
end
redis.call('HSET', KEYS[1], 'status', overall)
return overall
"""


class Store:
    """Articles, idempotency keys and seeds in one Redis database, under one key prefix."""

    def __init__(self, client: redis.Redis, prefix: str = "newsdesk", idempotency_ttl: int = 86_400) -> None:
        self.redis = client
        self.prefix = prefix
        self.idempotency_ttl = idempotency_ttl
        self._create = client.register_script(_CREATE)
        self._start = client.register_script(_START)
        self._finish = client.register_script(_FINISH)
        self.metrics = MetricsRecorder(client, prefix)

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        return cls(connect(settings), settings.key_prefix, settings.idempotency_ttl)

    # keys
    def _article_key(self, article_id: str) -> str:
        return f"{self.prefix}:article:{article_id}"

    def _seed_key(self, seed_id: str) -> str:
        return f"{self.prefix}:seed:{seed_id}"

    @property
    def _articles_key(self) -> str:
        return f"{self.prefix}:articles"

    @property
    def _pending_key(self) -> str:
        return f"{self.prefix}:pending"

    @property
    def _seeds_key(self) -> str:
        return f"{self.prefix}:seeds"

    @property
    def _sketches_key(self) -> str:
        return f"{self.prefix}:seeds:sketch"

    @property
    def _seed_log_key(self) -> str:
        return f"{self.prefix}:seeds:log"

    # articles
    def create_article(
        self, article: NewArticle, *, idempotency_key: str | None = None, digest: str = ""
    ) -> Submission:
        """Store a new article with every analysis queued; an Idempotency-Key seen before returns its article.

        Raises IdempotencyConflict when the key was used for a request with a different digest.
        """
        article_id = uuid.uuid4().hex
        now = now_iso()
        values: dict[str, str] = {
            "id": article_id,
            "status": "queued",
            "text": article.text,
            "options": json.dumps(dict(article.options)),
            "owner": article.owner,
            "created_at": now,
            "updated_at": now,
        }
        for name in _METADATA_FIELDS:
            value = getattr(article, name)
            if value is not None:
                values[f"meta:{name}"] = value
        for name in ANALYSES:
            values[f"{name}:status"] = "queued"
            values[f"{name}:attempts"] = "0"
        keys = [self._article_key(article_id), self._articles_key, self._pending_key]
        if idempotency_key is not None:
            # Scoped to the owner: two clients may pick the same key without meeting.
            scoped = hashlib.sha256(f"{article.owner}\n{idempotency_key}".encode()).hexdigest()
            keys.append(f"{self.prefix}:idempotency:{scoped}")
        flat = [item for pair in values.items() for item in pair]
        created, stored = self._create(
            keys=keys, args=[article_id, _now_ms(), digest, self.idempotency_ttl, *flat]
        )
        existing_id, _, existing_digest = stored.decode().partition("|")
        if not created and existing_digest != digest:
            raise IdempotencyConflict(existing_id)
        return Submission(existing_id, bool(created))

    def get_article(self, article_id: str) -> Article | None:
        raw = self.redis.hgetall(self._article_key(article_id))
        if not raw:
            return None
        values = {_text(key): _text(value) for key, value in raw.items()}
        return Article(
            id=values["id"],
            status=values["status"],  # type: ignore[arg-type]
            text=values["text"],
            metadata={name: values[f"meta:{name}"] for name in _METADATA_FIELDS if f"meta:{name}" in values},
            options=json.loads(values.get("options", "{}")),
            created_at=values["created_at"],
            updated_at=values["updated_at"],
            finished_at=values.get("finished_at"),
            analyses={name: _analysis_state(values, name) for name in ANALYSES},
            owner=values.get("owner", ""),
        )

    def start_analysis(self, article_id: str, name: str, worker: str = "") -> tuple[str | None, int] | None:
        """Mark an analysis running; returns (previous status, attempts so far), or None if no article."""
        outcome = self._start(
            keys=[self._article_key(article_id), self._pending_key],
            args=[article_id, name, now_iso(), _now_ms(), worker],
        )
        if outcome is None:
            return None
        previous, attempts = outcome
        return (previous.decode() if previous is not None else None), int(attempts)

    def finish_analysis(
        self,
        article_id: str,
        name: str,
        *,
        result: Mapping[str, Any] | None,
        version: str,
        error: str | None = None,
    ) -> ArticleStatus | None:
        """Store an analysis's result (or its failure) and return the article's new status."""
        status = "failed" if error is not None else "done"
        outcome = self._finish(
            keys=[self._article_key(article_id), self._pending_key],
            args=[
                article_id,
                name,
                status,
                json.dumps(result) if result is not None else "",
                version,
                error or "",
                now_iso(),
                _now_ms(),
                *ANALYSES,
            ],
        )
        if outcome is None:
            return None
        article_status = _text(outcome)
        finished = ARTICLES_FINISHED.inc(article_status) if article_status in {"done", "failed"} else []
        self.metrics.record(ANALYSIS_RESULTS.inc(name, status), finished)
        return article_status  # type: ignore[return-value]

    def stale_articles(self, older_than: float, limit: int = 500) -> list[str]:
        """Unfinished articles with no progress for `older_than` seconds, the oldest first."""
        cutoff = _now_ms() - int(older_than * 1000)
        return [_text(item) for item in self.redis.zrangebyscore(self._pending_key, "-inf", cutoff, 0, limit)]

    def touch_pending(self, article_id: str) -> None:
        """Record progress on an unfinished article (the sweeper has just re-queued it)."""
        self.redis.zadd(self._pending_key, {article_id: _now_ms()}, xx=True)

    def pending_count(self) -> int:
        return int(self.redis.zcard(self._pending_key))

    def list_article_ids(self, limit: int = 100) -> list[str]:
        """The most recent articles first."""
        return [_text(item) for item in self.redis.zrevrange(self._articles_key, 0, limit - 1)]

    # seeds
    def add_seeds(
        self, seeds: Iterable[Seed], sketch: Callable[[str], bytes], *, batch: int = 500
    ) -> tuple[int, int]:
        """Store seeds with their duplicate-index sketches. Returns (added or changed, unchanged).

        A seed whose id and text are already stored is left alone (and not sketched again), so loading
        a folder twice is cheap.
        """
        added = unchanged = 0
        for chunk in _chunks(seeds, batch):
            digests = [hashlib.sha256(seed.text.encode()).hexdigest() for seed in chunk]
            stored = self.redis.pipeline(transaction=False)
            for seed in chunk:
                stored.hget(self._seed_key(seed.id), "digest")
            existing = stored.execute()
            pipe = self.redis.pipeline(transaction=True)
            for seed, digest, old in zip(chunk, digests, existing, strict=True):
                if old is not None and old.decode() == digest:
                    unchanged += 1
                    continue
                added += 1
                record: dict[FieldT, EncodableT] = {
                    "id": seed.id,
                    "text": seed.text,
                    "digest": digest,
                    "added_at": seed.added_at or now_iso(),
                }
                record.update({k: v for k, v in (("title", seed.title), ("source", seed.source)) if v})
                pipe.delete(self._seed_key(seed.id))
                pipe.hset(self._seed_key(seed.id), mapping=record)
                pipe.zadd(self._seeds_key, {seed.id: 0})
                pipe.hset(self._sketches_key, seed.id, sketch(seed.text))
                pipe.rpush(self._seed_log_key, seed.id)
            pipe.execute()
        return added, unchanged

    def get_seed(self, seed_id: str) -> Seed | None:
        raw = self.redis.hgetall(self._seed_key(seed_id))
        if not raw:
            return None
        values = {_text(key): _text(value) for key, value in raw.items()}
        return Seed(
            values["id"], values["text"], values.get("title"), values.get("source"), values.get("added_at")
        )

    def seed_texts(self, seed_ids: Sequence[str]) -> dict[str, str]:
        pipe = self.redis.pipeline(transaction=False)
        for seed_id in seed_ids:
            pipe.hget(self._seed_key(seed_id), "text")
        return {
            seed_id: text.decode() for seed_id, text in zip(seed_ids, pipe.execute(), strict=True) if text
        }

    def list_seeds(self, *, after: str | None = None, limit: int = 100) -> list[Seed]:
        """Seeds in id order, starting after the id `after`."""
        start = f"({after}".encode() if after else b"-"
        ids = [_text(item) for item in self.redis.zrangebylex(self._seeds_key, start, b"+", 0, limit)]
        pipe = self.redis.pipeline(transaction=False)
        for seed_id in ids:
            pipe.hmget(self._seed_key(seed_id), "title", "source", "added_at")
        return [
            Seed(seed_id, "", *(value.decode() if value else None for value in row))
            for seed_id, row in zip(ids, pipe.execute(), strict=True)
        ]

    def replace_sketches(self, sketches: Mapping[str, bytes]) -> None:
        """Overwrite stored sketches in place (after a sketch format change); the seed log is untouched."""
        if sketches:
            mapping: dict[FieldT, EncodableT] = {key: value for key, value in sketches.items()}
            self.redis.hset(self._sketches_key, mapping=mapping)

    def count_seeds(self) -> int:
        return int(self.redis.zcard(self._seeds_key))

    def seed_sketches_since(self, position: int) -> tuple[int, list[tuple[str, bytes]]]:
        """Seeds added or changed since a position in the seed log; returns the new position too."""
        ids = [_text(item) for item in self.redis.lrange(self._seed_log_key, position, -1)]
        if not ids:
            return position, []
        sketches = self.redis.hmget(self._sketches_key, ids)
        pairs = zip(ids, sketches, strict=True)
        return position + len(ids), [(i, s if isinstance(s, bytes) else s.encode()) for i, s in pairs if s]

    # workers
    @property
    def _workers_key(self) -> str:
        return f"{self.prefix}:workers"

    def worker_heartbeat(self, name: str) -> None:
        self.redis.zadd(self._workers_key, {name: time.time()})

    def worker_gone(self, name: str) -> None:
        self.redis.zrem(self._workers_key, name)

    def live_workers(self, max_age: float) -> list[str]:
        """Workers whose last heartbeat is at most `max_age` seconds old."""
        members = self.redis.zrangebyscore(self._workers_key, time.time() - max_age, "+inf")
        return [_text(member) for member in members]

    def ping(self) -> bool:
        return bool(self.redis.ping())


def _text(value: Any) -> str:
    """A value read from Redis (bytes: the client does not decode, since sketches are binary) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _analysis_state(values: Mapping[str, str], name: str) -> AnalysisState:
    result = values.get(f"{name}:result")
    return AnalysisState(
        status=values.get(f"{name}:status", "queued"),  # type: ignore[arg-type]
        result=json.loads(result) if result else None,
        version=values.get(f"{name}:version") or None,
        error=values.get(f"{name}:error") or None,
        attempts=int(values.get(f"{name}:attempts", 0)),
        started_at=values.get(f"{name}:started_at"),
        finished_at=values.get(f"{name}:finished_at"),
        worker=values.get(f"{name}:worker"),
    )


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
