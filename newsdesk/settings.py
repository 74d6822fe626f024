"""Configuration: read once from the environment (or a mapping in tests) into one frozen object."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_KEY_ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]{1,64}):(?P<digest>[0-9a-f]{64})$")
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
# The most items one page of a batch holds (`GET /v1/batches/{id}?limit=`), and so the largest batch.
MAX_BATCH_PAGE = 1000


@dataclass(frozen=True)
class Settings:
    """Every setting, with its environment variable in the field's metadata."""

    redis_url: str = field(default=DEFAULT_REDIS_URL, metadata={"env": "REDIS_URL"})
    key_prefix: str = field(default="newsdesk", metadata={"env": "NEWSDESK_KEY_PREFIX"})
    # Request limits: a body over max_body_bytes is refused with 413 before it is read.
    max_body_bytes: int = field(default=1_048_576, metadata={"env": "NEWSDESK_MAX_BODY_BYTES"})
    max_text_chars: int = field(default=200_000, metadata={"env": "NEWSDESK_MAX_TEXT_CHARS"})
    # Analyses
    summary_sentences: int = field(default=3, metadata={"env": "NEWSDESK_SUMMARY_SENTENCES"})
    stance_scorer: str = field(default="model", metadata={"env": "NEWSDESK_STANCE_SCORER"})
    # Duplicate verdicts (None: the analysis's tuned defaults; see the README for what they measure).
    duplicate_threshold: float | None = field(default=None, metadata={"env": "NEWSDESK_DUPLICATE_THRESHOLD"})
    duplicate_min_similarity: float | None = field(
        default=None, metadata={"env": "NEWSDESK_DUPLICATE_MIN_SIMILARITY"}
    )
    partial_threshold: float | None = field(default=None, metadata={"env": "NEWSDESK_PARTIAL_THRESHOLD"})
    # Seeds loaded into the store when `newsdesk run` or the compose API container starts.
    seeds_dir: Path = field(default=PROJECT_ROOT / "seeds", metadata={"env": "NEWSDESK_SEEDS_DIR"})
    # Delivery: a task running longer than task_time_limit is killed; the broker hands an unacknowledged
    # message to another worker after visibility_timeout, so it must stay well above the time limit.
    task_time_limit: int = field(default=120, metadata={"env": "NEWSDESK_TASK_TIME_LIMIT"})
    visibility_timeout: int = field(default=900, metadata={"env": "NEWSDESK_VISIBILITY_TIMEOUT"})
    # An analysis started this many times without finishing (its worker died, or it hit the time limit)
    # is marked failed instead of being tried again: one poison article must not stall the queue.
    max_attempts: int = field(default=3, metadata={"env": "NEWSDESK_MAX_ATTEMPTS"})
    # The sweeper re-queues articles without progress for stuck_after seconds, every sweep_interval.
    stuck_after: float = field(default=600.0, metadata={"env": "NEWSDESK_STUCK_AFTER"})
    sweep_interval: float = field(default=30.0, metadata={"env": "NEWSDESK_SWEEP_INTERVAL"})
    idempotency_ttl: int = field(default=86_400, metadata={"env": "NEWSDESK_IDEMPOTENCY_TTL"})
    worker_concurrency: int = field(default=2, metadata={"env": "NEWSDESK_WORKER_CONCURRENCY"})
    # Which queue an analysis travels on, as analysis=queue pairs ("stance=stance"); the rest travel on
    # "analyses". Analyses on one queue go in one message per article and run in one task. The API and
    # every worker must be given the same value.
    analysis_queues: str = field(default="", metadata={"env": "NEWSDESK_ANALYSIS_QUEUES"})
    # The queues `newsdesk worker` consumes, comma-separated ("analyses", "webhooks", and any queue
    # NEWSDESK_ANALYSIS_QUEUES names); empty: all of them.
    worker_queues: str = field(default="", metadata={"env": "NEWSDESK_WORKER_QUEUES"})
    # Redis answers within milliseconds; a longer wait means it is down, and clients get a 503 fast.
    redis_timeout: float = field(default=1.0, metadata={"env": "NEWSDESK_REDIS_TIMEOUT"})
    # API keys as name:sha256hex pairs, comma-separated (`newsdesk keys new NAME` makes one). Empty: no
    # keys needed. Each key sees only its own articles.
    api_keys: str = field(default="", metadata={"env": "NEWSDESK_API_KEYS"})
    # Requests per API key (or per client address without keys) to /v1, in Flask-Limiter's notation
    # ("600/minute"); "off" turns limiting off. Counted in Redis, so it holds across API processes.
    rate_limit: str = field(default="600/minute", metadata={"env": "NEWSDESK_RATE_LIMIT"})
    rate_limit_storage: str = field(default="", metadata={"env": "NEWSDESK_RATE_LIMIT_STORAGE"})
    # Reverse proxies in front of the API whose X-Forwarded-For/-Proto to believe (0: none). Behind a
    # proxy every request comes from its address, so without this all keyless clients share one budget.
    trusted_proxies: int = field(default=0, metadata={"env": "NEWSDESK_TRUSTED_PROXIES"})
    # Submissions are refused (503, Retry-After) while this many articles are unfinished.
    max_backlog: int = field(default=10_000, metadata={"env": "NEWSDESK_MAX_BACKLOG"})
    # Results for other services (batches, long-polling, retention, the result stream, webhooks). A batch
    # is read back a page of at most MAX_BATCH_PAGE items, so one page always holds a whole batch.
    max_batch: int = field(default=100, metadata={"env": "NEWSDESK_MAX_BATCH"})
    max_wait: int = field(default=60, metadata={"env": "NEWSDESK_MAX_WAIT"})
    # A finished article (its results, its batch) is deleted this many seconds after it finished.
    result_ttl: int = field(default=604_800, metadata={"env": "NEWSDESK_RESULT_TTL"})
    # Completed results go to the stream {prefix}:results, trimmed to about this many entries.
    results_stream_maxlen: int = field(default=100_000, metadata={"env": "NEWSDESK_RESULTS_STREAM_MAXLEN"})
    webhook_secret: str = field(default="", metadata={"env": "NEWSDESK_WEBHOOK_SECRET"})
    # Callbacks to private, loopback or link-local addresses are refused unless this is on.
    webhook_allow_private: bool = field(default=False, metadata={"env": "NEWSDESK_WEBHOOK_ALLOW_PRIVATE"})
    webhook_max_attempts: int = field(default=8, metadata={"env": "NEWSDESK_WEBHOOK_MAX_ATTEMPTS"})
    # Retry n waits webhook_backoff * 2**(n-1) seconds, at most webhook_backoff_max (and at most half the
    # visibility timeout: a retry waits in a worker, and would be redelivered elsewhere past it).
    webhook_backoff: float = field(default=2.0, metadata={"env": "NEWSDESK_WEBHOOK_BACKOFF"})
    webhook_backoff_max: float = field(default=300.0, metadata={"env": "NEWSDESK_WEBHOOK_BACKOFF_MAX"})
    webhook_timeout: float = field(default=10.0, metadata={"env": "NEWSDESK_WEBHOOK_TIMEOUT"})
    log_level: str = field(default="INFO", metadata={"env": "NEWSDESK_LOG_LEVEL"})
    log_format: str = field(default="keyvalue", metadata={"env": "NEWSDESK_LOG_FORMAT"})

    def __post_init__(self) -> None:
        if self.visibility_timeout <= self.task_time_limit * 2:
            raise ValueError(
                "NEWSDESK_VISIBILITY_TIMEOUT must be more than twice NEWSDESK_TASK_TIME_LIMIT, or a slow "
                "analysis would be handed to a second worker while the first still runs it"
            )
        if self.stuck_after <= self.task_time_limit:
            raise ValueError(
                "NEWSDESK_STUCK_AFTER must exceed NEWSDESK_TASK_TIME_LIMIT, or the sweeper would re-queue "
                "analyses that are still running"
            )
        if self.log_format not in {"keyvalue", "json"}:
            raise ValueError("NEWSDESK_LOG_FORMAT must be 'keyvalue' or 'json'")
        self.api_key_hashes()  # fails early on a malformed entry
        if self.stance_scorer not in {"model", "lexicon"}:
            raise ValueError("NEWSDESK_STANCE_SCORER must be 'model' or 'lexicon'")
        if not 1 <= self.max_batch <= MAX_BATCH_PAGE:
            raise ValueError(f"NEWSDESK_MAX_BATCH must be between 1 and {MAX_BATCH_PAGE}")
        if self.trusted_proxies < 0:
            raise ValueError("NEWSDESK_TRUSTED_PROXIES must not be negative")
        if self.max_wait < 0 or self.result_ttl < 1:
            raise ValueError("NEWSDESK_RESULT_TTL must be positive, NEWSDESK_MAX_WAIT not negative")

    @property
    def rate_limited(self) -> bool:
        return self.rate_limit.strip().lower() not in {"", "off"}

    def api_key_hashes(self) -> dict[str, str]:
        """The configured API keys as {name: SHA-256 hex digest}."""
        keys: dict[str, str] = {}
        for entry in filter(None, (part.strip() for part in self.api_keys.split(","))):
            match = _KEY_ENTRY.match(entry)
            if match is None:
                raise ValueError(
                    f"NEWSDESK_API_KEYS: {entry[:12]!r}... is not name:<SHA-256 in 64 hex digits>"
                )
            keys[match["name"]] = match["digest"]
        return keys

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from environment variables; keyword overrides win."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in fields(cls):
            raw = environ.get(spec.metadata["env"])
            if raw is not None and raw != "":
                values[spec.name] = _convert(spec.type, raw, spec.metadata["env"])
        values.update(overrides)
        return cls(**values)


def _convert(kind: Any, raw: str, name: str) -> Any:
    text = str(kind)
    try:
        if text.startswith("bool"):
            if raw.strip().lower() not in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
                raise ValueError(raw)
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        if text.startswith("int"):
            return int(raw)
        if text.startswith("float"):
            return float(raw)
        if text.startswith("Path"):
            return Path(raw)
    except ValueError as error:
        raise ValueError(f"{name}: cannot read {raw!r} as {text.split(' ', maxsplit=1)[0]}") from error
    return raw
