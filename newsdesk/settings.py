"""Configuration: read once from the environment (or a mapping in tests) into one frozen object."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# An API key's entry in NEWSDESK_API_KEYS: the client's name, a colon, the key's SHA-256.
KEY_NAME = r"[A-Za-z0-9_.\-]{1,64}"
KEY_NAME_RULE = "1 to 64 letters, digits, '_', '.' or '-'"
_KEY_ENTRY = re.compile(rf"^(?P<name>{KEY_NAME}):(?P<digest>[0-9a-f]{{64}})$")
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
# The most items one page of a batch holds (`GET /v1/batches/{id}?limit=`), and so the largest batch.
MAX_BATCH_PAGE = 1000
# Seconds a stopping API gives the requests in progress (a long poll's wait included) to finish.
API_GRACEFUL_TIMEOUT = 20
# The longest summary a request may ask for (workers.analysis.summary.MAX_SENTENCES; a test keeps them
# equal): importing the analysis here would load it into every process that reads its settings.
MAX_SUMMARY_SENTENCES = 20
_KEY_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{1,64}\Z")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def redacted(url: str) -> str:
    """A URL fit for an error message: its password replaced."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # unreadable ("redis://[x/0"): nothing of it is shown, a password may be in it
        return "(not a URL)"
    if password is None:
        return url
    netloc = parts.netloc.replace(f":{password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _redis_url(url: str) -> None:
    # The store (redis-py) and the Celery broker (kombu) both take this URL; kombu knows no unix://.
    if urlsplit(url).scheme not in {"redis", "rediss"}:
        raise ValueError
    from redis.connection import parse_url  # noqa: PLC0415 - only when a URL is given

    parse_url(url)  # type: ignore[no-untyped-call] # port, query options; a ValueError says what is wrong
    if not re.fullmatch(r"/?\d*", urlsplit(url).path):
        raise ValueError("the path must be a database number, such as /0")  # redis-py would use 0 silently


def _rate_limit(text: str) -> None:
    if text.strip().lower() in {"", "off"}:
        return
    from limits import parse_many  # noqa: PLC0415 - Flask-Limiter's own parser, so it means the same

    if any(limit.amount < 1 for limit in parse_many(text)):
        raise ValueError("a limit of 0 requests refuses every request; use off for no limit")


def _rate_limit_storage(uri: str) -> None:
    # The registry storage_from_string looks schemes up in (not in limits.storage.__all__; the tests
    # of good and bad URIs would notice a move). Building a storage here instead would connect to some.
    from limits.storage import SCHEMES  # type: ignore[attr-defined]  # noqa: PLC0415

    scheme = urlsplit(uri).scheme
    # async+ storages are for asyncio limiters; Flask-Limiter counts synchronously.
    if uri and (scheme not in SCHEMES or scheme.startswith("async+")):
        raise ValueError


def _analysis_queues(text: str) -> None:
    # The layout's rules live with the queues; imported only when a layout is given.
    from workers.celery_app import QueueLayout  # noqa: PLC0415

    QueueLayout.parse(text)


def _key_prefix(prefix: str) -> None:
    # Keys are found with SCAN patterns, where * ? [ ] are wildcards; spaces break redis-cli use.
    if not _KEY_PREFIX.match(prefix):
        raise ValueError


@dataclass(frozen=True)
class Settings:
    """Every setting, with its environment variable in the field's metadata."""

    redis_url: str = field(
        default=DEFAULT_REDIS_URL,
        metadata={
            "env": "REDIS_URL",
            "check": _redis_url,
            "allowed": "a redis:// or rediss:// URL",
            "shown": redacted,
        },
    )
    key_prefix: str = field(
        default="newsdesk",
        metadata={
            "env": "NEWSDESK_KEY_PREFIX",
            "check": _key_prefix,
            "allowed": "1 to 64 letters, digits and _ . : -",
        },
    )
    # Request limits: a body over max_body_bytes is refused with 413 before it is read.
    max_body_bytes: int = field(
        default=1_048_576, metadata={"env": "NEWSDESK_MAX_BODY_BYTES", "minimum": 1024}
    )
    max_text_chars: int = field(default=200_000, metadata={"env": "NEWSDESK_MAX_TEXT_CHARS", "minimum": 1})
    # Analyses
    summary_sentences: int = field(
        default=3,
        metadata={"env": "NEWSDESK_SUMMARY_SENTENCES", "minimum": 1, "maximum": MAX_SUMMARY_SENTENCES},
    )
    stance_scorer: str = field(
        default="model", metadata={"env": "NEWSDESK_STANCE_SCORER", "choices": ("model", "lexicon")}
    )
    # Duplicate verdicts (None: the analysis's tuned defaults; see the README for what they measure).
    duplicate_threshold: float | None = field(
        default=None, metadata={"env": "NEWSDESK_DUPLICATE_THRESHOLD", "minimum": 0.01, "maximum": 1}
    )
    duplicate_min_similarity: float | None = field(
        default=None, metadata={"env": "NEWSDESK_DUPLICATE_MIN_SIMILARITY", "minimum": 0, "maximum": 1}
    )
    partial_threshold: float | None = field(
        default=None, metadata={"env": "NEWSDESK_PARTIAL_THRESHOLD", "minimum": 0.01, "maximum": 1}
    )
    # Seeds loaded into the store when `newsdesk run` or the compose API container starts.
    seeds_dir: Path = field(default=PROJECT_ROOT / "seeds", metadata={"env": "NEWSDESK_SEEDS_DIR"})
    # Delivery: a task running longer than task_time_limit is killed; the broker hands an unacknowledged
    # message to another worker after visibility_timeout, so it must stay well above the time limit.
    task_time_limit: int = field(default=120, metadata={"env": "NEWSDESK_TASK_TIME_LIMIT", "minimum": 2})
    visibility_timeout: int = field(
        default=900, metadata={"env": "NEWSDESK_VISIBILITY_TIMEOUT", "minimum": 1}
    )
    # An analysis started this many times without finishing (its worker died, or it hit the time limit)
    # is marked failed instead of being tried again: one poison article must not stall the queue.
    max_attempts: int = field(default=3, metadata={"env": "NEWSDESK_MAX_ATTEMPTS", "minimum": 1})
    # The sweeper re-queues articles without progress for stuck_after seconds, every sweep_interval.
    stuck_after: float = field(default=600.0, metadata={"env": "NEWSDESK_STUCK_AFTER", "minimum": 1})
    sweep_interval: float = field(default=30.0, metadata={"env": "NEWSDESK_SWEEP_INTERVAL", "minimum": 1})
    idempotency_ttl: int = field(default=86_400, metadata={"env": "NEWSDESK_IDEMPOTENCY_TTL", "minimum": 1})
    worker_concurrency: int = field(default=2, metadata={"env": "NEWSDESK_WORKER_CONCURRENCY", "minimum": 1})
    # Which queue an analysis travels on, as analysis=queue pairs ("stance=stance"); the rest travel on
    # "analyses". Analyses on one queue go in one message per article and run in one task. The API and
    # every worker must be given the same value.
    analysis_queues: str = field(
        default="",
        metadata={
            "env": "NEWSDESK_ANALYSIS_QUEUES",
            "check": _analysis_queues,
            "allowed": "analysis=queue pairs, comma-separated, such as stance=stance",
        },
    )
    # The queues `newsdesk worker` consumes, comma-separated ("analyses", "webhooks", and any queue
    # NEWSDESK_ANALYSIS_QUEUES names); empty: all of them.
    worker_queues: str = field(default="", metadata={"env": "NEWSDESK_WORKER_QUEUES"})
    # Redis answers within milliseconds; a longer wait means it is down, and clients get a 503 fast.
    redis_timeout: float = field(default=1.0, metadata={"env": "NEWSDESK_REDIS_TIMEOUT", "minimum": 0.01})
    # API keys as name:sha256hex pairs, comma-separated (`newsdesk keys new NAME` makes one). Empty: no
    # keys needed. Each key sees only its own articles.
    api_keys: str = field(default="", metadata={"env": "NEWSDESK_API_KEYS"})
    # Requests per API key (or per client address without keys) to /v1, in Flask-Limiter's notation
    # ("600/minute"); "off" turns limiting off. Counted in Redis, so it holds across API processes.
    rate_limit: str = field(
        default="600/minute",
        metadata={
            "env": "NEWSDESK_RATE_LIMIT",
            "check": _rate_limit,
            "allowed": "off, or limits in Flask-Limiter's notation such as 600/minute or 10/second;600/hour",
        },
    )
    rate_limit_storage: str = field(
        default="",
        metadata={
            "env": "NEWSDESK_RATE_LIMIT_STORAGE",
            "check": _rate_limit_storage,
            "allowed": "empty (REDIS_URL) or a `limits` storage URI such as redis://host:6379/1 or memory://",
            "shown": redacted,
        },
    )
    # Reverse proxies in front of the API whose X-Forwarded-For/-Proto to believe (0: none). Behind a
    # proxy every request comes from its address, so without this all keyless clients share one budget.
    trusted_proxies: int = field(default=0, metadata={"env": "NEWSDESK_TRUSTED_PROXIES", "minimum": 0})
    # Submissions are refused (503, Retry-After) while this many articles are unfinished.
    max_backlog: int = field(default=10_000, metadata={"env": "NEWSDESK_MAX_BACKLOG", "minimum": 1})
    # Results for other services (batches, long-polling, retention, the result stream, webhooks). A batch
    # is read back a page of at most MAX_BATCH_PAGE items, so one page always holds a whole batch.
    max_batch: int = field(
        default=100, metadata={"env": "NEWSDESK_MAX_BATCH", "minimum": 1, "maximum": MAX_BATCH_PAGE}
    )
    max_wait: int = field(default=60, metadata={"env": "NEWSDESK_MAX_WAIT", "minimum": 0})
    # A finished article (its results, its batch) is deleted this many seconds after it finished.
    result_ttl: int = field(default=604_800, metadata={"env": "NEWSDESK_RESULT_TTL", "minimum": 1})
    # Completed results go to the stream {prefix}:results, trimmed to about this many entries.
    results_stream_maxlen: int = field(
        default=100_000, metadata={"env": "NEWSDESK_RESULTS_STREAM_MAXLEN", "minimum": 0}
    )
    webhook_secret: str = field(default="", metadata={"env": "NEWSDESK_WEBHOOK_SECRET"})
    # Callbacks to private, loopback or link-local addresses are refused unless this is on.
    webhook_allow_private: bool = field(default=False, metadata={"env": "NEWSDESK_WEBHOOK_ALLOW_PRIVATE"})
    webhook_max_attempts: int = field(
        default=8, metadata={"env": "NEWSDESK_WEBHOOK_MAX_ATTEMPTS", "minimum": 1}
    )
    # Retry n waits webhook_backoff * 2**(n-1) seconds, at most webhook_backoff_max (and at most half the
    # visibility timeout: a retry waits in a worker, and would be redelivered elsewhere past it).
    webhook_backoff: float = field(default=2.0, metadata={"env": "NEWSDESK_WEBHOOK_BACKOFF", "minimum": 0.1})
    webhook_backoff_max: float = field(
        default=300.0, metadata={"env": "NEWSDESK_WEBHOOK_BACKOFF_MAX", "minimum": 0.1}
    )
    # Seconds one delivery attempt may take in all (resolving, connecting, sending, the answer's head).
    webhook_timeout: float = field(default=10.0, metadata={"env": "NEWSDESK_WEBHOOK_TIMEOUT", "minimum": 0.1})
    log_level: str = field(default="INFO", metadata={"env": "NEWSDESK_LOG_LEVEL", "choices": _LOG_LEVELS})
    log_format: str = field(
        default="keyvalue", metadata={"env": "NEWSDESK_LOG_FORMAT", "choices": ("keyvalue", "json")}
    )

    def __post_init__(self) -> None:
        # Logging's level names are upper case; "info" or "debug" in the environment mean the same.
        object.__setattr__(self, "log_level", self.log_level.upper())
        for spec in fields(self):
            _check(spec, getattr(self, spec.name))
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
        self.api_key_hashes()  # fails early on a malformed entry

    @property
    def rate_limited(self) -> bool:
        return self.rate_limit.strip().lower() not in {"", "off"}

    def api_key_hashes(self) -> dict[str, str]:
        """The configured API keys as {SHA-256 hex digest: name}. A name may have several keys (a new one
        beside the old while clients move over: both see the same articles); one key may have one name."""
        keys: dict[str, str] = {}
        for entry in filter(None, (part.strip() for part in self.api_keys.split(","))):
            match = _KEY_ENTRY.match(entry)
            if match is None:
                raise ValueError(
                    f"NEWSDESK_API_KEYS: {entry[:12]!r}... is not name:<SHA-256 in 64 hex digits>"
                )
            digest = match["digest"]
            if keys.get(digest, match["name"]) != match["name"]:
                raise ValueError(
                    f"NEWSDESK_API_KEYS: one key is given to both {keys[digest]!r} and {match['name']!r}"
                )
            keys[digest] = match["name"]
        return keys

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from environment variables; keyword overrides win.

        A value that cannot be read, or is outside its field's range, raises ValueError with one line
        naming the variable, the value and what is allowed.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in fields(cls):
            raw = environ.get(spec.metadata["env"])
            if raw is not None and raw != "":
                values[spec.name] = _convert(spec, raw)
        values.update(overrides)
        return cls(**values)


# A field's range is declared in its metadata and checked here, for every Settings however it is built:
#   minimum, maximum  numbers, inclusive (a float must also be finite: NaN compares false with any bound)
#   choices           the only values allowed
#   check             a function raising ValueError on a bad value, and `allowed` saying what is good
#   shown             how the value appears in the error (a URL's password is not printed)
# An optional (None) value is unset and always allowed.
def _check(spec: Field[Any], value: Any) -> None:
    meta = spec.metadata
    if value is None or isinstance(value, bool | Path):
        return
    detail = ""
    if isinstance(value, float) and not math.isfinite(value):
        good = False
    elif "check" in meta:
        try:
            meta["check"](value)
            good = True
        except ValueError as error:
            good, detail = False, str(error)
    else:
        good = meta.get("minimum", value) <= value <= meta.get("maximum", value) and value in meta.get(
            "choices", (value,)
        )
    if not good:
        shown = meta["shown"](value) if "shown" in meta else value
        raise ValueError(_complaint(spec, repr(shown), detail))


def _allowed(spec: Field[Any]) -> str:
    """What a field takes, in words: 'a whole number from 1 to 1000', 'one of model, lexicon'."""
    meta = spec.metadata
    kind = str(spec.type)
    if "allowed" in meta:
        return str(meta["allowed"])
    if "choices" in meta:
        return "one of " + ", ".join(meta["choices"])
    if kind.startswith("bool"):
        return "one of 1, true, yes, on, 0, false, no, off"
    words = "a whole number" if kind.startswith("int") else "a finite number"
    if "minimum" in meta and "maximum" in meta:
        words += f" from {meta['minimum']} to {meta['maximum']}"
    elif "minimum" in meta:
        words += f", at least {meta['minimum']}"
    if kind.endswith("None"):
        words += ", or empty for the default"
    return words


def _complaint(spec: Field[Any], shown: str, detail: str = "") -> str:
    complaint = f"{spec.metadata['env']}={shown}: must be {_allowed(spec)}"
    return f"{complaint} ({detail})" if detail else complaint


def _convert(spec: Field[Any], raw: str) -> Any:
    text = str(spec.type)
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
        shown = spec.metadata["shown"](raw) if "shown" in spec.metadata else raw
        raise ValueError(_complaint(spec, repr(shown))) from error
    return raw
