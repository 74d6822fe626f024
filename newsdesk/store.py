"""The Redis data layer: articles with their analysis results, idempotency keys, and the seed corpus.

The store is the single source of truth for polling. Every multi-step change runs as one Lua script,
so readers never see an article half-written and two workers finishing at once agree on its status.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import redis
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.exceptions import NoScriptError
from redis.retry import Retry
from redis.typing import EncodableT, FieldT

from newsdesk.metrics import ANALYSIS_RESULTS, ARTICLES_FINISHED, MetricsRecorder
from newsdesk.settings import Settings

ANALYSES = ("summary", "stance", "duplicates")
ArticleStatus = Literal["queued", "running", "done", "failed"]
AnalysisStatus = Literal["queued", "running", "done", "failed"]
_METADATA_FIELDS = ("title", "url", "source", "published_at")
STANCE_TARGETS = ("us", "russia", "un")
TERMINAL = frozenset({"done", "failed"})
# How long one prune_indexes() may go on past each index's first page. It runs on the worker's consumer
# timer, once per sweep: long enough to drop thousands of pages' entries, short enough not to stall it.
PRUNE_BUDGET_SECONDS = 1.0
Started = tuple[str | None, int]  # an analysis's status before its start, and its attempts so far


@dataclass(frozen=True, slots=True)
class _ScriptCall:
    """One run of a Lua script: what a pipeline of several needs to know."""

    script: Script
    keys: list[str]
    args: list[Any]

    def run(self) -> Any:
        """On its own, in a round trip of its own (loading the script into Redis if it is not there)."""
        return self.script(keys=self.keys, args=self.args)


class IdempotencyConflict(Exception):
    """An Idempotency-Key was reused with a different request body."""

    def __init__(self, article_id: str) -> None:
        super().__init__(article_id)
        self.article_id = article_id


class BacklogFull(Exception):
    """Storing the articles would take the unfinished ones over the bound; nothing was stored."""

    def __init__(self, waiting: int, adding: int = 1) -> None:
        super().__init__(waiting, adding)
        self.waiting = waiting  # unfinished articles when the submission was refused
        self.adding = adding  # the articles the submission would have added


@dataclass(frozen=True, slots=True)
class NewArticle:
    text: str
    title: str | None = None
    url: str | None = None
    source: str | None = None
    published_at: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    owner: str = ""  # the API key's name; "" when the API runs without keys
    callback_url: str | None = None  # a webhook called with the results once the article is finished


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
    expires_at: str | None = None  # set when it finishes: NEWSDESK_RESULT_TTL later it is deleted
    batch: str | None = None
    callback_url: str | None = None
    webhook: str | None = None  # the callback's state: due, queued, delivered, failed, refused


@dataclass(frozen=True, slots=True)
class Seed:
    id: str
    text: str
    title: str | None = None
    source: str | None = None
    added_at: str | None = None


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """A message the store pushes onto a Redis list (a broker queue) in the very step that stores the
    article it is about, so an article is never stored without the message that asks for its analysis."""

    key: str  # the list
    payload: str
    id: str  # for the logs: the id the workers will log too


# The messages that ask for an article's analyses, given its id (made by the store).
MessagesFor = Callable[[str], Sequence[QueuedMessage]]


def no_messages(article_id: str) -> Sequence[QueuedMessage]:
    return ()


@dataclass(frozen=True, slots=True)
class Submission:
    article_id: str
    created: bool  # False when an Idempotency-Key matched an earlier submission
    messages: tuple[QueuedMessage, ...] = ()  # those pushed: none for a replay


@dataclass(frozen=True, slots=True)
class Rejected:
    """A batch item refused at submission: its index and a problem-style reason."""

    index: int
    problem: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BatchSubmission:
    batch_id: str
    created: bool  # False when an Idempotency-Key matched an earlier batch
    messages: tuple[QueuedMessage, ...] = ()  # those pushed: none for a replay


@dataclass(frozen=True, slots=True)
class BatchItem:
    index: int
    article_id: str | None  # None for a rejected item
    status: str  # an article status; "rejected"; or "gone" (deleted, or expired)
    problem: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    id: str
    owner: str
    created_at: str
    total: int
    accepted: int
    article_ids: list[str]  # the accepted items' articles, in item order


@dataclass(frozen=True, slots=True)
class ArticleSummary:
    """A listing entry: enough to filter on and to decide which articles to fetch."""

    id: str
    status: str
    created_at: str
    finished_at: str | None
    expires_at: str | None
    title: str | None
    source: str | None
    batch: str | None
    is_duplicate: bool | None  # None until the duplicate check has finished
    stance: dict[str, str]  # target -> label, once the stance analysis has finished


@dataclass(frozen=True, slots=True)
class ListFilters:
    status: str | None = None
    is_duplicate: bool | None = None
    stance: Mapping[str, str] = field(default_factory=dict)  # target -> label
    since_ms: int | None = None  # created at or after
    until_ms: int | None = None  # created before


@dataclass(frozen=True, slots=True)
class ListPage:
    items: list[ArticleSummary]
    next_cursor: tuple[int, str] | None  # (index score, article id) of the last entry examined


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


_STORE_ID = re.compile(r"[0-9a-f]{32}\Z")
_SEED_DESCRIPTION = ("title", "source")  # a seed's fields besides its text, replaceable on their own


def is_store_id(text: str) -> bool:
    """Whether `text` has the form of the article and batch ids made here (uuid4 hex). A path id of
    another form names nothing, and must not be spliced into a key ("<id>:items" is another key)."""
    return _STORE_ID.match(text) is not None


def write_token() -> str:
    """A new token for one logical write, made once before its retries (see "Writes a caller may send
    twice" above the scripts)."""
    return uuid.uuid4().hex


def _token(token: str | None) -> str:
    """The caller's token, or one for this call alone; `|` separates a recorded token from its reply."""
    if token is None:
        return write_token()
    if not token or "|" in token:
        raise ValueError("a write token is a non-empty text without '|'")
    return token


def _now_ms() -> int:
    return int(time.time() * 1000)


def iso_utc(moment: datetime) -> str:
    """The API's one form of a time: UTC to the millisecond, with a `Z` (2024-01-21T08:00:00.000Z).

    `moment` must carry its time zone; one too near year 1 or 9999 to convert raises OverflowError."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso() -> str:
    return iso_utc(datetime.now(UTC))


def _iso(milliseconds: int) -> str:
    return iso_utc(datetime.fromtimestamp(milliseconds / 1000, UTC))


def content_digest(payload: Mapping[str, Any]) -> str:
    """A stable digest of a request body, to tell a retry from a different request."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


# Creates the article, its listing entries, its place among the unfinished articles and the messages
# that ask for its analyses, or returns the article an Idempotency-Key already names (while that article
# still exists: one deleted or expired frees its key). A new article that would take the unfinished ones
# over the bound is refused, in the same step as the count, so concurrent submissions cannot all pass one
# count: {-1, unfinished}. The id is new with each call, so an article already under it is this very
# call sent again (redis-py resends a command whose reply was lost): its reply, and nothing pushed twice.
# KEYS: article, articles, pending, owner's articles, owners, sequence[, idempotency key], message lists.
# ARGV: id, now (ms), digest, idempotency TTL, article key prefix, owner, bound (-1: none),
# 1 with an idempotency key (else 0), number of messages, messages..., fields...
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return {1, ARGV[1] .. '|' .. ARGV[3]} end
local keyed = ARGV[8] == '1'
if keyed then
  local existing = redis.call('GET', KEYS[7])
  if existing then
    local id = string.match(existing, '^([^|]*)')
    if redis.call('EXISTS', ARGV[5] .. id) == 1 then return {0, existing} end
  end
end
local bound = tonumber(ARGV[7])
if bound >= 0 then
  local waiting = redis.call('ZCARD', KEYS[3])
  if waiting + 1 > bound then return {-1, tostring(waiting)} end
end
local messages = tonumber(ARGV[9])
redis.call('HSET', KEYS[1], unpack(ARGV, 10 + messages))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
local seq = redis.call('INCR', KEYS[6]) % 1000
redis.call('ZADD', KEYS[4], tonumber(ARGV[2]) * 1000 + seq, ARGV[1])
redis.call('SADD', KEYS[5], ARGV[6])
local first_list = 7
if keyed then
  redis.call('SET', KEYS[7], ARGV[1] .. '|' .. ARGV[3], 'EX', ARGV[4])
  redis.call('HSET', KEYS[1], 'idempotency_key', KEYS[7])
  first_list = 8
end
for m = 1, messages do
  redis.call('LPUSH', KEYS[first_list + m - 1], ARGV[9 + m])
end
return {1, ARGV[1] .. '|' .. ARGV[3]}
"""

# A batch in one step: its record, its items in order (an article id, or '!' and the rejection), and
# every accepted article with its listing entries, so a batch is never stored half-way. Like _CREATE, a
# new batch whose articles would take the unfinished ones over the bound is refused: {-1, unfinished}.
# Each accepted article's messages go onto the lists in the same step. As in _CREATE, a batch already
# under its new id is this call sent again.
# KEYS: batch, batch items, articles, pending, owner's articles, owners, sequence[, idempotency key],
# message lists.
# ARGV: batch id, now (ms), digest, idempotency TTL, batch key prefix, owner, result TTL,
# article key prefix, bound (-1: none), accepted articles, 1 with an idempotency key (else 0), number of
# message lists, number of batch fields, batch fields..., then per item either 'a', article id, number
# of fields, fields..., one message per list, or 'r', rejection JSON.
_CREATE_BATCH = """
if redis.call('EXISTS', KEYS[1]) == 1 then return {1, ARGV[1] .. '|' .. ARGV[3]} end
local keyed = ARGV[11] == '1'
local lists = tonumber(ARGV[12])
local first_list = keyed and 9 or 8
if keyed then
  local existing = redis.call('GET', KEYS[8])
  if existing then
    local id = string.match(existing, '^([^|]*)')
    if redis.call('EXISTS', ARGV[5] .. id) == 1 then return {0, existing} end
  end
end
local bound = tonumber(ARGV[9])
if bound >= 0 then
  local waiting = redis.call('ZCARD', KEYS[4])
  if waiting + tonumber(ARGV[10]) > bound then return {-1, tostring(waiting)} end
end
local fields = tonumber(ARGV[13])
redis.call('HSET', KEYS[1], unpack(ARGV, 14, 13 + fields))
local i = 14 + fields
while i <= #ARGV do
  if ARGV[i] == 'a' then
    local id, count = ARGV[i + 1], tonumber(ARGV[i + 2])
    redis.call('HSET', ARGV[8] .. id, unpack(ARGV, i + 3, i + 2 + count))
    redis.call('ZADD', KEYS[3], ARGV[2], id)
    redis.call('ZADD', KEYS[4], ARGV[2], id)
    local seq = redis.call('INCR', KEYS[7]) % 1000
    redis.call('ZADD', KEYS[5], tonumber(ARGV[2]) * 1000 + seq, id)
    redis.call('RPUSH', KEYS[2], id)
    i = i + 3 + count
    for m = 0, lists - 1 do
      redis.call('LPUSH', KEYS[first_list + m], ARGV[i + m])
    end
    i = i + lists
  else
    redis.call('RPUSH', KEYS[2], '!' .. ARGV[i + 1])
    i = i + 2
  end
end
redis.call('SADD', KEYS[6], ARGV[6])
if tonumber(ARGV[10]) == 0 then  -- else its last article's finish or delete sets it (_FINISH, _DELETE)
  redis.call('EXPIRE', KEYS[1], ARGV[7])
  redis.call('EXPIRE', KEYS[2], ARGV[7])
end
if keyed then
  redis.call('SET', KEYS[8], ARGV[1] .. '|' .. ARGV[3], 'EX', ARGV[4])
  redis.call('HSET', KEYS[1], 'idempotency_key', KEYS[8])
end
return {1, ARGV[1] .. '|' .. ARGV[3]}
"""

# Writes a caller may send twice. A write can reach Redis and be applied while its reply is lost (the
# connection drops first); redis-py's own retry of the command (see connect) and the workers' retries
# through an outage (`patiently`) then send it again, and a second application would count an attempt
# twice. So the scripts whose second application would differ from the first (an analysis's start and
# finish, a webhook's moves and attempts) take a token naming one logical write; the others below write
# the same values again (_RECORD_WEBHOOK) or find nothing left to do (_DELETE). The caller makes the
# token once, before its retries (write_token()); without one the store makes a token per call, which
# still covers redis-py's resend. The script records the token, with its reply, in a field of the record
# it changes; a call that finds its own token there is the same write sent again, and gets the recorded
# reply with nothing changed. Only the last token is kept: a caller retries one write before it makes the
# next, so its own is the last unless another process wrote the same record in between (a second worker
# on the same analysis), and then the retry is applied again, as every retry was before tokens. A record
# from before tokens has no such field, so its first write is applied as usual. Fields (token|reply):
# `<analysis>:last_start` (token|previous status|attempts), `<analysis>:last_finish` (token|article
# status|1 when that finish made the article done or failed, else 0), `webhook:last_start`
# (token|state|attempts), `webhook:last_move` (token|new state).
_REPLAY = """
local function replay(key, field, token)
  local last = redis.call('HGET', key, field)
  if last and string.sub(last, 1, #token + 1) == token .. '|' then return string.sub(last, #token + 2) end
  return nil
end
"""

# Marks one analysis running and counts the attempt; returns its previous status and the attempts so
# far. Nothing for a missing article. KEYS: article, pending.
# ARGV: id, analysis, now (ISO), now (ms), the worker process ("host:pid"), token.
_START = (
    _REPLAY
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local name = ARGV[2]
local replayed = replay(KEYS[1], name .. ':last_start', ARGV[6])
if replayed then
  local before, counted = string.match(replayed, '^([^|]*)|(%d+)$')
  if before == '' then before = false end  -- no status field: HGET's reply
  return {before, tonumber(counted)}
end
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
redis.call('HSET', KEYS[1], name .. ':last_start', ARGV[6] .. '|' .. (previous or '') .. '|' .. attempts)
return {previous, attempts}
"""
)

# Stores one analysis's outcome (overwriting any earlier one, so a redelivered task never appends) and
# derives the article's status from all of them in the same step. The first time the article becomes
# done or failed, the same step starts its retention clock, adds it to the result stream, tells
# long-polls (pub/sub), counts it in its batch and marks its webhook due: each happens exactly once
# per article, however often its analyses are redelivered. KEYS: article, pending, result stream.
# ARGV: id, analysis, status, result, version, error, now (ISO), now (ms), the analysis's public block
# (JSON), result TTL, expires at (ISO), stream length, key prefix, token, number of facet fields,
# facet fields..., every analysis name... Returns {the article's status, 1 when this finish made it done
# or failed, else 0}: the article is counted finished once, though every later finish sees it so.
_FINISH = (
    _REPLAY
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local id, name, now, prefix = ARGV[1], ARGV[2], ARGV[7], ARGV[13]
local replayed = replay(KEYS[1], name .. ':last_finish', ARGV[14])
if replayed then
  local status, became = string.match(replayed, '^([^|]*)|([01])$')
  -- No flag: an older release wrote it (its retries run its own script); read as not counted here.
  if not status then return {replayed, 0} end
  return {status, tonumber(became)}
end
local was = redis.call('HGET', KEYS[1], 'status')
redis.call('HSET', KEYS[1], name .. ':status', ARGV[3], name .. ':result', ARGV[4],
           name .. ':version', ARGV[5], name .. ':error', ARGV[6], name .. ':finished_at', now,
           name .. ':block', ARGV[9], 'updated_at', now)
local facets = tonumber(ARGV[15])
if facets > 0 then redis.call('HSET', KEYS[1], unpack(ARGV, 16, 15 + 2 * facets)) end
local first = 16 + 2 * facets
local terminal, failed, started = true, false, false
for i = first, #ARGV do
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
local became = 0
if terminal and was ~= 'done' and was ~= 'failed' then
  became = 1
  redis.call('HSET', KEYS[1], 'expires_at', ARGV[11])
  redis.call('EXPIRE', KEYS[1], ARGV[10])
  local meta = redis.call('HMGET', KEYS[1], 'owner', 'batch', 'callback_url', 'created_at')
  local batch = meta[2] or ''
  if tonumber(ARGV[12]) > 0 then
    local entry = {'id', id, 'status', overall, 'owner', meta[1] or '', 'batch', batch,
                   'created_at', meta[4] or '', 'finished_at', now, 'expires_at', ARGV[11]}
    for i = first, #ARGV do
      table.insert(entry, ARGV[i])
      table.insert(entry, redis.call('HGET', KEYS[1], ARGV[i] .. ':block') or '{}')
    end
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[12], '*', unpack(entry))
  end
  redis.call('PUBLISH', prefix .. ':finished:' .. id, overall)
  if meta[3] and meta[3] ~= '' then
    redis.call('HSET', KEYS[1], 'webhook', 'due')
    redis.call('ZADD', prefix .. ':webhooks', ARGV[8], id)  -- the sweeper's watch list
  end
  if batch ~= '' then
    local key = prefix .. ':batch:' .. batch
    if redis.call('EXISTS', key) == 1 then
      local finished = redis.call('HINCRBY', key, 'finished', 1)
      if finished >= tonumber(redis.call('HGET', key, 'accepted')) then
        -- Its last article: the batch lives on for the result TTL from now (not from an earlier one).
        redis.call('EXPIRE', key, ARGV[10])
        redis.call('EXPIRE', key .. ':items', ARGV[10])
        redis.call('PUBLISH', prefix .. ':batch-finished:' .. batch, 'finished')
      end
    end
  end
end
redis.call('HSET', KEYS[1], name .. ':last_finish', ARGV[14] .. '|' .. overall .. '|' .. became)
return {overall, became}
"""
)

# Deletes an article of this owner with its listing entries and its Idempotency-Key; an unfinished
# article of a batch counts as finished there, so the batch's long-polls are not left waiting. The
# receipt, a key named by a token new with each call, is left for a minute: the same call sent again
# (redis-py resends a command whose reply was lost) finds it and answers 1, not "no such article".
# KEYS: article, articles, pending, owner's articles, receipt. ARGV: id, owner, key prefix, result TTL.
# Returns 1 or 0.
_DELETE = """
if redis.call('EXISTS', KEYS[5]) == 1 then return 1 end
local row = redis.call('HMGET', KEYS[1], 'owner', 'status', 'idempotency_key', 'batch')
if not row[1] or row[1] ~= ARGV[2] then return 0 end
if row[3] then
  local named = redis.call('GET', row[3])
  if named and string.match(named, '^([^|]*)') == ARGV[1] then redis.call('DEL', row[3]) end
end
if row[4] and row[4] ~= '' and row[2] ~= 'done' and row[2] ~= 'failed' then
  local key = ARGV[3] .. ':batch:' .. row[4]
  if redis.call('EXISTS', key) == 1 then
    local finished = redis.call('HINCRBY', key, 'finished', 1)
    if finished >= tonumber(redis.call('HGET', key, 'accepted')) then
      redis.call('EXPIRE', key, ARGV[4])  -- as a last finish does
      redis.call('EXPIRE', key .. ':items', ARGV[4])
      redis.call('PUBLISH', ARGV[3] .. ':batch-finished:' .. row[4], 'finished')
    end
  end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('SET', KEYS[5], ARGV[1], 'EX', 60)
redis.call('PUBLISH', ARGV[3] .. ':finished:' .. ARGV[1], 'deleted')  -- wakes the article's long-polls
return 1
"""

# The webhook of a finished article moves from one state to the next only from the expected one, so
# two workers never both claim it. A move sent again is the same move only while the webhook is still
# where it took it: one moved on since (say, sent back to due after a failed send) is moved afresh.
# KEYS: article. ARGV: expected state, new state, token. Returns 1 or 0.
_WEBHOOK_STATE = (
    _REPLAY
    + """
local state = redis.call('HGET', KEYS[1], 'webhook')
if state == ARGV[2] and replay(KEYS[1], 'webhook:last_move', ARGV[3]) == ARGV[2] then return 1 end
if state ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'webhook', ARGV[2], 'webhook:last_move', ARGV[3] .. '|' .. ARGV[2])
return 1
"""
)

# A delivery attempt begins. It is counted before its request is made, so an attempt whose worker dies
# or is killed mid-request still counts, and this count (not a task's retry counter, which starts again
# at 0 in a delivery the sweeper sends again) is what ends a webhook at NEWSDESK_WEBHOOK_MAX_ATTEMPTS.
# Only an unsettled webhook (due or queued) gets an attempt. KEYS: article, watch list. ARGV: now (ms),
# id, token. Returns {state, attempts}, the attempts including this one when it began; nil without a
# webhook.
_START_WEBHOOK = (
    _REPLAY
    + """
local state = redis.call('HGET', KEYS[1], 'webhook')
if not state then return nil end
local replayed = replay(KEYS[1], 'webhook:last_start', ARGV[3])
if replayed then
  local began, counted = string.match(replayed, '^([^|]*)|(%d+)$')
  return {began, tonumber(counted)}
end
if state ~= 'due' and state ~= 'queued' then
  return {state, tonumber(redis.call('HGET', KEYS[1], 'webhook:attempts') or '0')}
end
local attempts = redis.call('HINCRBY', KEYS[1], 'webhook:attempts', 1)
redis.call('ZADD', KEYS[2], 'XX', ARGV[1], ARGV[2])
redis.call('HSET', KEYS[1], 'webhook:last_start', ARGV[3] .. '|' .. state .. '|' .. attempts)
return {state, attempts}
"""
)

# A delivery's outcome, written only to an article that still exists (a plain HSET on a deleted one
# would leave a stub hash without expiry). Two deliveries of one webhook can run at once (a message
# sent twice, at-least-once), so an outcome is written only when it is news: a delivery always is, and
# nothing is after one; any other outcome only from the latest attempt begun, and not over a webhook
# already failed or refused (an older attempt's retry must not reopen or outlive a newer one's verdict).
# A webhook still to be delivered stays on the sweeper's watch list with the time of this news; a
# settled one leaves it. KEYS: article, watch list. ARGV: state, attempts, error, now (ms), id, the
# number of the attempt the outcome is of. Returns 1 when written.
_RECORD_WEBHOOK = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[5])
  return 0
end
local current = redis.call('HGET', KEYS[1], 'webhook')
if current == 'delivered' then return 0 end
local latest = tonumber(redis.call('HGET', KEYS[1], 'webhook:attempts') or '0')
local attempts = tonumber(ARGV[2])
if ARGV[1] == 'delivered' then
  attempts = math.max(attempts, latest)  -- an older attempt's delivery: the newer ones still began
elseif current == 'failed' or current == 'refused' or latest ~= tonumber(ARGV[6]) then
  return 0
end
redis.call('HSET', KEYS[1], 'webhook', ARGV[1], 'webhook:attempts', attempts, 'webhook:error', ARGV[3])
if ARGV[1] == 'queued' or ARGV[1] == 'due' then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
else
  redis.call('ZREM', KEYS[2], ARGV[5])
end
return 1
"""


class Store:
    """Articles, idempotency keys and seeds in one Redis database, under one key prefix."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "newsdesk",
        idempotency_ttl: int = 86_400,
        *,
        result_ttl: int = Settings.result_ttl,
        stream_maxlen: int = Settings.results_stream_maxlen,
    ) -> None:
        self.redis = client
        self.prefix = prefix
        self.idempotency_ttl = idempotency_ttl
        self.result_ttl = result_ttl
        self.stream_maxlen = stream_maxlen
        self._create = client.register_script(_CREATE)
        self._create_batch = client.register_script(_CREATE_BATCH)
        self._start = client.register_script(_START)
        self._finish = client.register_script(_FINISH)
        self.metrics = MetricsRecorder(client, prefix)
        self._delete = client.register_script(_DELETE)
        self._webhook_state = client.register_script(_WEBHOOK_STATE)
        self._record_webhook = client.register_script(_RECORD_WEBHOOK)
        self._start_webhook = client.register_script(_START_WEBHOOK)

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        return cls(
            connect(settings),
            settings.key_prefix,
            settings.idempotency_ttl,
            result_ttl=settings.result_ttl,
            stream_maxlen=settings.results_stream_maxlen,
        )

    # keys
    def _article_key(self, article_id: str) -> str:
        return f"{self.prefix}:article:{article_id}"

    def _seed_key(self, seed_id: str) -> str:
        return f"{self.prefix}:seed:{seed_id}"

    @property
    def _articles_key(self) -> str:
        return f"{self.prefix}:articles"

    @property
    def _webhooks_key(self) -> str:
        """Articles whose webhook is not settled yet, scored by the last news of it (ms)."""
        return f"{self.prefix}:webhooks"

    @property
    def _pending_key(self) -> str:
        return f"{self.prefix}:pending"

    @property
    def _seeds_key(self) -> str:
        return f"{self.prefix}:seeds"

    def _owner_articles_key(self, owner: str) -> str:
        return f"{self.prefix}:owner:{owner}:articles"

    @property
    def _owners_key(self) -> str:
        return f"{self.prefix}:owners"

    @property
    def _sequence_key(self) -> str:
        return f"{self.prefix}:sequence"

    def _batch_key(self, batch_id: str) -> str:
        return f"{self.prefix}:batch:{batch_id}"

    @property
    def results_stream(self) -> str:
        """The stream of finished articles (one entry each), for other services' consumer groups."""
        return f"{self.prefix}:results"

    def finished_channel(self, article_id: str) -> str:
        return f"{self.prefix}:finished:{article_id}"

    def batch_finished_channel(self, batch_id: str) -> str:
        return f"{self.prefix}:batch-finished:{batch_id}"

    def _idempotency_key(self, kind: str, owner: str, key: str) -> str:
        # Scoped to the owner: two clients may pick the same key without meeting.
        scoped = hashlib.sha256(f"{owner}\n{key}".encode()).hexdigest()
        return f"{self.prefix}:idempotency:{kind}{scoped}"

    def _creation_keys(self, owner: str) -> list[str]:
        return [
            self._articles_key,
            self._pending_key,
            self._owner_articles_key(owner),
            self._owners_key,
            self._sequence_key,
        ]

    @property
    def _sketches_key(self) -> str:
        return f"{self.prefix}:seeds:sketch"

    @property
    def _seed_log_key(self) -> str:
        return f"{self.prefix}:seeds:log"

    # articles
    def create_article(
        self,
        article: NewArticle,
        *,
        idempotency_key: str | None = None,
        digest: str = "",
        max_backlog: int | None = None,
        messages: MessagesFor = no_messages,
    ) -> Submission:
        """Store a new article with every analysis queued, and push the messages that ask the workers
        for them in the same step; an Idempotency-Key seen before returns its article (and pushes none).

        Raises IdempotencyConflict when the key was used for a request with a different digest, and
        BacklogFull (storing nothing) when a new article would make more than `max_backlog` unfinished.
        """
        article_id = uuid.uuid4().hex
        now_ms = _now_ms()  # the listing's time and created_at agree to the millisecond
        outgoing = messages(article_id)
        keys = [self._article_key(article_id), *self._creation_keys(article.owner)]
        if idempotency_key is not None:
            keys.append(self._idempotency_key("", article.owner, idempotency_key))
        created, stored = self._create(
            keys=[*keys, *(message.key for message in outgoing)],
            args=[
                article_id,
                now_ms,
                digest,
                self.idempotency_ttl,
                self._article_key(""),
                article.owner,
                -1 if max_backlog is None else max_backlog,
                0 if idempotency_key is None else 1,
                len(outgoing),
                *(message.payload for message in outgoing),
                *_article_fields(article_id, article, _iso(now_ms)),
            ],
        )
        if created == -1:
            raise BacklogFull(int(stored))
        existing_id, _, existing_digest = stored.decode().partition("|")
        if not created and existing_digest != digest:
            raise IdempotencyConflict(existing_id)
        return Submission(existing_id, bool(created), tuple(outgoing) if created else ())

    def create_batch(
        self,
        owner: str,
        items: Sequence[NewArticle | Rejected],
        *,
        idempotency_key: str | None = None,
        digest: str = "",
        max_backlog: int | None = None,
        messages: MessagesFor = no_messages,
    ) -> BatchSubmission:
        """Store a batch and all its accepted articles, with the messages that ask for their analyses,
        in one step; rejected items keep their reasons.

        An Idempotency-Key seen before returns its batch; with another digest, IdempotencyConflict. A new
        batch whose articles would make more than `max_backlog` unfinished raises BacklogFull.
        """
        batch_id = uuid.uuid4().hex
        now_ms = _now_ms()
        now = _iso(now_ms)
        accepted = sum(isinstance(item, NewArticle) for item in items)
        record = {
            "id": batch_id,
            "owner": owner,
            "created_at": now,
            "total": len(items),
            "accepted": accepted,
        }
        args: list[EncodableT] = [
            batch_id,
            now_ms,
            digest,
            self.idempotency_ttl,
            self._batch_key(""),
            owner,
            self.result_ttl,
            self._article_key(""),
            -1 if max_backlog is None else max_backlog,
            accepted,
            0 if idempotency_key is None else 1,
        ]
        batch_fields = [str(value) for pair in record.items() for value in pair]
        item_args: list[EncodableT] = []
        outgoing: list[QueuedMessage] = []
        lists: list[str] | None = None  # every article's messages go to the same lists, in one order
        for item in items:
            if isinstance(item, Rejected):
                item_args += ["r", json.dumps({"index": item.index, **item.problem})]
                continue
            article_id = uuid.uuid4().hex
            fields = _article_fields(article_id, item, now, batch=batch_id)
            own = list(messages(article_id))
            if lists is None:
                lists = [message.key for message in own]
            elif [message.key for message in own] != lists:
                raise ValueError("the articles of one batch must have their messages on the same lists")
            item_args += ["a", article_id, len(fields), *fields, *(message.payload for message in own)]
            outgoing += own
        args += [len(lists or []), len(batch_fields), *batch_fields, *item_args]
        keys = [
            self._batch_key(batch_id),
            self._batch_key(batch_id) + ":items",
            *self._creation_keys(owner),
        ]
        if idempotency_key is not None:
            keys.append(self._idempotency_key("batch:", owner, idempotency_key))
        created, stored = self._create_batch(keys=[*keys, *(lists or [])], args=args)
        if created == -1:
            raise BacklogFull(int(stored), accepted)
        existing_id, _, existing_digest = stored.decode().partition("|")
        if not created and existing_digest != digest:
            raise IdempotencyConflict(existing_id)
        return BatchSubmission(existing_id, bool(created), tuple(outgoing) if created else ())

    def get_batch(self, batch_id: str) -> Batch | None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hgetall(self._batch_key(batch_id))
        pipe.lrange(self._batch_key(batch_id) + ":items", 0, -1)
        raw, entries = pipe.execute()
        if not raw:
            return None
        values = {_text(key): _text(value) for key, value in raw.items()}
        return Batch(
            id=values["id"],
            owner=values.get("owner", ""),
            created_at=values["created_at"],
            total=int(values["total"]),
            accepted=int(values["accepted"]),
            article_ids=[e for e in map(_text, entries) if not e.startswith("!")],
        )

    def batch_items(self, batch_id: str, start: int, count: int) -> list[BatchItem]:
        """Items start..start+count-1 of a batch with each article's current status."""
        entries = [
            _text(e)
            for e in self.redis.lrange(self._batch_key(batch_id) + ":items", start, start + count - 1)
        ]
        ids = [entry for entry in entries if not entry.startswith("!")]
        statuses = dict(zip(ids, self.article_statuses(ids), strict=True))
        items: list[BatchItem] = []
        for index, entry in enumerate(entries, start):
            if entry.startswith("!"):
                problem = json.loads(entry[1:])
                problem.pop("index", None)
                items.append(BatchItem(index, None, "rejected", problem))
            else:
                items.append(BatchItem(index, entry, statuses[entry] or "gone"))
        return items

    def article_statuses(self, article_ids: Sequence[str]) -> list[str | None]:
        """Each article's status, None for one that no longer exists."""
        pipe = self.redis.pipeline(transaction=False)
        for article_id in article_ids:
            pipe.hget(self._article_key(article_id), "status")
        return [_text(status) if status is not None else None for status in pipe.execute()]

    def delete_article(self, article_id: str, owner: str) -> bool:
        """Delete an article of `owner` with its results; False when there is none."""
        deleted = self._delete(
            keys=[
                self._article_key(article_id),
                self._articles_key,
                self._pending_key,
                self._owner_articles_key(owner),
                f"{self.prefix}:deleted:{write_token()}",
            ],
            args=[article_id, owner, self.prefix, self.result_ttl],
        )
        return bool(deleted)

    def list_articles(
        self,
        owner: str,
        filters: ListFilters,
        *,
        limit: int = 50,
        after: tuple[int, str] | None = None,
        scan: int = 1000,
    ) -> ListPage:
        """An owner's articles, newest first, that pass the filters.

        At most `scan` index entries are examined per call, so a page may hold fewer than `limit` items
        and still have a next cursor. Entries whose article has expired are dropped from the index here.
        """
        index = self._owner_articles_key(owner)
        high: str | float = f"({filters.until_ms * 1000}" if filters.until_ms is not None else "+inf"
        low: str | float = filters.since_ms * 1000 if filters.since_ms is not None else "-inf"
        if after is not None:
            high = after[0]
        items: list[ArticleSummary] = []
        examined = 0
        last = after
        exhausted = False
        chunk = min(max(limit * 2, 50), scan)
        while len(items) < limit and examined < scan and not exhausted:
            fetched: list[tuple[bytes, float]] = self.redis.zrevrangebyscore(  # type: ignore[assignment]
                index, high, low, start=0, num=chunk, withscores=True
            )
            exhausted = len(fetched) < chunk
            rows: list[tuple[str, int]] = [(_text(member), int(score)) for member, score in fetched]
            if last is not None:  # the cursor's score may be shared (same ms): skip what came before it
                cursor = last
                rows = [(m, sc) for m, sc in rows if sc < cursor[0] or (sc == cursor[0] and m < cursor[1])]
            summaries = self._summaries([member for member, _ in rows])
            gone = [member for (member, _), summary in zip(rows, summaries, strict=True) if summary is None]
            if gone:
                self.redis.zrem(index, *gone)
            for position, ((member, score), summary) in enumerate(zip(rows, summaries, strict=True)):
                examined += 1
                last = (score, member)
                if summary is not None and _passes(summary, filters):
                    items.append(summary)
                if len(items) == limit or examined >= scan:
                    exhausted = exhausted and position == len(rows) - 1
                    break
            if last is not None:
                high = last[0]
        return ListPage(items, None if exhausted else last)

    def _summaries(self, article_ids: Sequence[str]) -> list[ArticleSummary | None]:
        columns = (
            "id",
            "status",
            "created_at",
            "finished_at",
            "expires_at",
            "meta:title",
            "meta:source",
            "batch",
            "facet:is_duplicate",
            *(f"facet:stance.{t}" for t in STANCE_TARGETS),
        )
        pipe = self.redis.pipeline(transaction=False)
        for article_id in article_ids:
            pipe.hmget(self._article_key(article_id), columns)
        summaries: list[ArticleSummary | None] = []
        for row in pipe.execute():
            values = [_text(value) if value is not None else None for value in row]
            if values[0] is None:
                summaries.append(None)
                continue
            duplicate = values[8]
            summaries.append(
                ArticleSummary(
                    id=values[0],
                    status=values[1] or "queued",
                    created_at=values[2] or "",
                    finished_at=values[3],
                    expires_at=values[4],
                    title=values[5],
                    source=values[6],
                    batch=values[7] or None,
                    is_duplicate=None if duplicate is None else duplicate == "true",
                    stance={t: v for t, v in zip(STANCE_TARGETS, values[9:], strict=True) if v is not None},
                )
            )
        return summaries

    def prune_indexes(self, *, limit: int = 1000, budget: float = PRUNE_BUDGET_SECONDS) -> int:
        """Drop listing entries of articles that have expired (or were deleted); returns how many.

        Only entries older than the result TTL can have expired (an article expires that long after it
        finished), so only those are checked, `limit` at a time. Each index gets one page; an index whose
        page was full gets more, in turns with the others, for up to `budget` seconds: a sweep's work
        stays bounded, yet keeps up with far more finishes per sweep interval than one page would.
        """
        deadline = time.monotonic() + budget
        cutoff_ms = _now_ms() - self.result_ttl * 1000
        owners = [_text(owner) for owner in self.redis.smembers(self._owners_key)]
        cutoffs = {
            self._articles_key: cutoff_ms,
            **{self._owner_articles_key(owner): cutoff_ms * 1000 for owner in owners},
        }
        # Per index still to page through, its entries checked and still there (an article that finished
        # long after it was submitted): the next page starts after them, so they never hide the gone ones.
        skip = dict.fromkeys(cutoffs, 0)
        removed = 0
        first_turn = True
        while skip and (first_turn or time.monotonic() < deadline):
            for index in list(skip):
                if not first_turn and time.monotonic() >= deadline:
                    break
                page = self.redis.zrangebyscore(index, "-inf", cutoffs[index], skip[index], limit)
                members = [_text(m) for m in page]
                if len(members) < limit:
                    del skip[index]  # its last old entries: done with it for this sweep
                if not members:
                    continue
                pipe = self.redis.pipeline(transaction=False)
                for member in members:
                    pipe.exists(self._article_key(member))
                gone = [m for m, exists in zip(members, pipe.execute(), strict=True) if not exists]
                if gone:
                    removed += int(self.redis.zrem(index, *gone))
                if index in skip:
                    skip[index] += len(members) - len(gone)
            first_turn = False
        return removed

    def wait_for_message(
        self,
        channel: str,
        finished: Callable[[], bool],
        timeout: float,
        *,
        stop: threading.Event | None = None,
    ) -> None:
        """Return once `finished()` holds or a message arrives on `channel`, or after `timeout` seconds,
        or within half a second of `stop` being set.

        Subscribes before the first check, so a message published in between is not missed. Blocks on
        the pub/sub socket (in half-second spells when there is a `stop` to look at), not a polling loop.
        """
        if timeout <= 0 or finished():
            return
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(channel)
            if finished():
                return
            deadline = time.monotonic() + timeout
            spell = 0.5 if stop is not None else timeout
            while (remaining := deadline - time.monotonic()) > 0 and not (stop and stop.is_set()):
                if pubsub.get_message(timeout=min(remaining, spell)) is not None:
                    return
        finally:
            pubsub.close()

    # webhooks
    def webhook_state(self, article_id: str) -> str | None:
        state = self.redis.hget(self._article_key(article_id), "webhook")
        return _text(state) if state is not None else None

    def move_webhook(self, article_id: str, expected: str, new: str, *, token: str | None = None) -> bool:
        """Set the webhook's state to `new` if it is `expected`; False otherwise (or no article). Sent
        again with the same `token` while the webhook is still `new`, it is True again, with no change."""
        return bool(
            self._webhook_state(keys=[self._article_key(article_id)], args=[expected, new, _token(token)])
        )

    def start_webhook(self, article_id: str, *, token: str | None = None) -> tuple[str, int] | None:
        """Count a delivery attempt of an unsettled webhook: (its state, the attempt's number). A settled
        one gets no attempt: (its state, the attempts it had). None when the article or webhook is gone.
        Sent again with the same `token`, it returns the same attempt without counting another."""
        started = self._start_webhook(
            keys=[self._article_key(article_id), self._webhooks_key],
            args=[_now_ms(), article_id, _token(token)],
        )
        if started is None:
            return None
        state, attempts = started
        return _text(state), int(attempts)

    def record_webhook(
        self, article_id: str, state: str, attempts: int, error: str = "", *, attempt: int | None = None
    ) -> bool:
        """Record the outcome of delivery attempt number `attempt` (default: `attempts`) on the article,
        with `attempts` as the count. False when it is not news (see _RECORD_WEBHOOK): the article is gone,
        the webhook was delivered, or a newer attempt has begun or settled it."""
        return bool(
            self._record_webhook(
                keys=[self._article_key(article_id), self._webhooks_key],
                args=[state, attempts, error, _now_ms(), article_id, attempt or attempts],
            )
        )

    def stale_webhooks(self, older_than: float, *, limit: int = 500) -> list[tuple[str, str]]:
        """(article id, state) of webhooks still `due` or `queued` with no news for `older_than` seconds.

        Entries of articles that are gone (deleted, expired) or whose webhook has settled are dropped.
        """
        cutoff = _now_ms() - int(older_than * 1000)
        members = [_text(m) for m in self.redis.zrangebyscore(self._webhooks_key, "-inf", cutoff, 0, limit)]
        if not members:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for member in members:
            pipe.hget(self._article_key(member), "webhook")
        stale: list[tuple[str, str]] = []
        settled: list[tuple[str, str]] = []
        for member, state in zip(members, pipe.execute(), strict=True):
            state_text = _text(state) if state is not None else ""
            (stale if state_text in {"due", "queued"} else settled).append((member, state_text))
        if settled:
            self.redis.zrem(self._webhooks_key, *(member for member, _ in settled))
        return stale

    def touch_webhook(self, article_id: str) -> None:
        """Restart a watched webhook's clock (it was just sent again)."""
        self.redis.zadd(self._webhooks_key, {article_id: _now_ms()}, xx=True)

    def get_article(self, article_id: str) -> Article | None:
        return _article_from(self.redis.hgetall(self._article_key(article_id)))

    def start_analysis(
        self, article_id: str, name: str, worker: str = "", *, token: str | None = None
    ) -> Started | None:
        """Mark an analysis running; returns (previous status, attempts so far), or None if no article.

        Sent again with the same `token` (its reply was lost), it returns the same and counts no attempt.
        """
        call = self._start_call(article_id, name, worker, _token(token))
        return _started(call.run())

    def start_analysis_and_read(
        self, article_id: str, name: str, worker: str = "", *, token: str | None = None
    ) -> tuple[Started | None, Article | None]:
        """start_analysis and get_article in one round trip: a worker's first step."""
        outcome, raw = self._pipelined(
            self._start_call(article_id, name, worker, _token(token)), self._article_key(article_id)
        )
        return _started(outcome), _article_from(raw)

    def _start_call(self, article_id: str, name: str, worker: str, token: str) -> _ScriptCall:
        return _ScriptCall(
            self._start,
            [self._article_key(article_id), self._pending_key],
            [article_id, name, now_iso(), _now_ms(), worker, token],
        )

    def finish_analysis(
        self,
        article_id: str,
        name: str,
        *,
        result: Mapping[str, Any] | None,
        version: str,
        error: str | None = None,
        token: str | None = None,
    ) -> ArticleStatus | None:
        """Store an analysis's result (or its failure) and return the article's new status. Sent again with
        the same `token`, it returns the status it returned then and stores nothing."""
        call = self._finish_call(article_id, name, result, version, error, _token(token))
        return self._finished(name, error, call.run())

    def finish_analysis_and_start(
        self,
        article_id: str,
        name: str,
        *,
        result: Mapping[str, Any] | None,
        version: str,
        error: str | None = None,
        next_name: str,
        worker: str = "",
        token: str | None = None,
    ) -> tuple[ArticleStatus | None, Started | None]:
        """finish_analysis, then start_analysis of the next analysis, in one round trip: a worker running
        several analyses of an article in a row. Returns the status after the finish, and the start.
        One `token` covers both (each script records it on its own analysis)."""
        token = _token(token)
        call = self._finish_call(article_id, name, result, version, error, token)
        finished, started = self._pipelined(call, self._start_call(article_id, next_name, worker, token))
        return self._finished(name, error, finished), _started(started)

    def _finish_call(
        self,
        article_id: str,
        name: str,
        result: Mapping[str, Any] | None,
        version: str,
        error: str | None,
        token: str,
    ) -> _ScriptCall:
        status = _analysis_status(error)
        now = now_iso()
        block = analysis_block(
            AnalysisState(status, dict(result) if result is not None else None, version, error, 0, None, now)
        )
        facets = _facets(name, result) if status == "done" and result is not None else {}
        expires = datetime.now(UTC) + timedelta(seconds=self.result_ttl)
        return _ScriptCall(
            self._finish,
            [self._article_key(article_id), self._pending_key, self.results_stream],
            [
                article_id,
                name,
                status,
                json.dumps(result) if result is not None else "",
                version,
                error or "",
                now,
                _now_ms(),
                json.dumps(block, ensure_ascii=False),
                self.result_ttl,
                iso_utc(expires),
                self.stream_maxlen,
                self.prefix,
                token,
                len(facets),
                *(item for pair in facets.items() for item in pair),
                *ANALYSES,
            ],
        )

    def _finished(self, name: str, error: str | None, outcome: Any) -> ArticleStatus | None:
        """The article's status from the finish script's reply, with the finish counted in the metrics
        (the article only by the finish that made it done or failed)."""
        if outcome is None:
            return None
        article_status, became = _text(outcome[0]), int(outcome[1])
        finished = ARTICLES_FINISHED.inc(article_status) if became else []
        self.metrics.record(ANALYSIS_RESULTS.inc(name, _analysis_status(error)), finished)
        return article_status  # type: ignore[return-value]

    def _pipelined(self, *calls: _ScriptCall | str) -> list[Any]:
        """Scripts, and HGETALLs of the keys given as strings, in one round trip.

        Scripts are sent by hash (EVALSHA): redis-py's own pipelined scripts first ask SCRIPT EXISTS, a
        round trip of its own. A script Redis does not know (its cache empties when it restarts) did not
        run: it is run again on its own, which loads it.
        """
        pipe = self.redis.pipeline(transaction=False)
        for call in calls:
            if isinstance(call, str):
                pipe.hgetall(call)
            else:
                pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
        replies: list[Any] = pipe.execute(raise_on_error=False)
        for i, (call, reply) in enumerate(zip(calls, replies, strict=True)):
            if isinstance(reply, NoScriptError) and isinstance(call, _ScriptCall):
                replies[i] = call.run()
            elif isinstance(reply, Exception):
                raise reply
        return replies

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

        A seed whose id, text, title and source are already stored is left alone, and one whose text
        is stored but not its title or source gets only those replaced (not sketched again), so loading
        a folder twice is cheap.
        """
        added = unchanged = 0
        for chunk in _chunks(seeds, batch):
            digests = [hashlib.sha256(seed.text.encode()).hexdigest() for seed in chunk]
            stored = self.redis.pipeline(transaction=False)
            for seed in chunk:
                stored.hmget(self._seed_key(seed.id), ["digest", *_SEED_DESCRIPTION])
            existing = stored.execute()
            pipe = self.redis.pipeline(transaction=True)
            for seed, digest, (old_digest, *old_description) in zip(chunk, digests, existing, strict=True):
                described = dict(zip(_SEED_DESCRIPTION, (seed.title or "", seed.source or ""), strict=True))
                stored_description = {
                    name: _text(value) if value else ""
                    for name, value in zip(_SEED_DESCRIPTION, old_description, strict=True)
                }
                same_text = old_digest is not None and _text(old_digest) == digest
                if same_text and described == stored_description:
                    unchanged += 1
                    continue
                added += 1
                if same_text:  # only the title or source changed: the sketch stands
                    for name, value in described.items():
                        if value:
                            pipe.hset(self._seed_key(seed.id), name, value)
                        else:
                            pipe.hdel(self._seed_key(seed.id), name)
                    continue
                record: dict[FieldT, EncodableT] = {
                    "id": seed.id,
                    "text": seed.text,
                    "digest": digest,
                    "added_at": seed.added_at or now_iso(),
                }
                record.update({name: value for name, value in described.items() if value})
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

    def memory_full(self) -> bool:
        """Whether Redis refuses writes for memory: at its maxmemory with noeviction (deploy/redis.conf).

        Asked with a write, not read from INFO: Redis decides per command, leaving replication and
        append-only buffers out of its count, so only a refused write tells for sure. The probe is one
        short-lived key. Heartbeats are refused too then, so this tells "Redis is full" from "no worker".
        """
        try:
            self.redis.set(self._memory_probe_key, b"1", px=10_000)
        except redis.OutOfMemoryError:
            return True
        return False

    @property
    def _memory_probe_key(self) -> str:
        return f"{self.prefix}:health:memory-probe"


def _text(value: Any) -> str:
    """A value read from Redis (bytes: the client does not decode, since sketches are binary) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _article_from(raw: Mapping[Any, Any]) -> Article | None:
    """An article from its hash as HGETALL returns it; None for an empty one (no such article)."""
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
        expires_at=values.get("expires_at"),
        batch=values.get("batch") or None,
        callback_url=values.get("callback_url") or None,
        webhook=values.get("webhook") or None,
    )


def _analysis_status(error: str | None) -> AnalysisStatus:
    """How a finished analysis ends: failed when it has an error."""
    return "failed" if error is not None else "done"


def _started(outcome: Any) -> Started | None:
    if outcome is None:
        return None
    previous, attempts = outcome
    return (previous.decode() if previous is not None else None), int(attempts)


def _article_fields(article_id: str, article: NewArticle, now: str, *, batch: str = "") -> list[str]:
    """The hash fields of a new article, flattened (field, value, ...); the id is always second."""
    values: dict[str, str] = {
        "id": article_id,
        "status": "queued",
        "text": article.text,
        "options": json.dumps(dict(article.options)),
        "owner": article.owner,
        "created_at": now,
        "updated_at": now,
    }
    if batch:
        values["batch"] = batch
    if article.callback_url:
        values["callback_url"] = article.callback_url
    for name in _METADATA_FIELDS:
        value = getattr(article, name)
        if value is not None:
            values[f"meta:{name}"] = value
    for name in ANALYSES:
        values[f"{name}:status"] = "queued"
        values[f"{name}:attempts"] = "0"
    return [item for pair in values.items() for item in pair]


def _facets(name: str, result: Mapping[str, Any]) -> dict[str, str]:
    """The few values of a result that listings filter on, stored beside it as plain fields."""
    if name == "duplicates" and "is_duplicate" in result:
        return {"facet:is_duplicate": "true" if result["is_duplicate"] else "false"}
    if name == "stance":
        targets = result.get("targets") or {}
        return {f"facet:stance.{t}": str(v["label"]) for t, v in targets.items() if isinstance(v, Mapping)}
    return {}


def _passes(summary: ArticleSummary, filters: ListFilters) -> bool:
    if filters.status is not None and summary.status != filters.status:
        return False
    if filters.is_duplicate is not None and summary.is_duplicate is not filters.is_duplicate:
        return False
    return all(summary.stance.get(target) == label for target, label in filters.stance.items())


def analysis_block(state: AnalysisState) -> dict[str, Any]:
    """The public shape of one analysis: its status, its result's fields, and what produced it."""
    block: dict[str, Any] = {"status": state.status}
    if state.status == "done" and state.result is not None:
        block.update(state.result)
    if state.version:
        block["version"] = state.version
    if state.status == "failed" and state.error:
        block["error"] = state.error
    if state.finished_at and state.status in {"done", "failed"}:
        block["finished_at"] = state.finished_at
    return block


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
