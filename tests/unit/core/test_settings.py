"""Settings: every value from the environment is read and range-checked once, at start."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from newsdesk.settings import MAX_SUMMARY_SENTENCES, Settings
from workers.analysis.summary import MAX_SENTENCES

# Values that were accepted before their ranges were declared, and what they broke.
BAD_VALUES = [
    ("NEWSDESK_IDEMPOTENCY_TTL", "0"),  # every POST with an Idempotency-Key answered 503
    ("NEWSDESK_IDEMPOTENCY_TTL", "-1"),
    ("NEWSDESK_MAX_BACKLOG", "-1"),  # backpressure silently off
    ("NEWSDESK_MAX_BACKLOG", "0"),
    ("NEWSDESK_MAX_ATTEMPTS", "0"),  # every analysis failed at once
    ("NEWSDESK_STUCK_AFTER", "nan"),  # passed the guard, then int(nan * 1000) raised on every sweep
    ("NEWSDESK_STUCK_AFTER", "inf"),
    ("NEWSDESK_STUCK_AFTER", "soon"),
    ("NEWSDESK_TASK_TIME_LIMIT", "0"),  # no hard limit, soft limit 1 s
    ("NEWSDESK_TASK_TIME_LIMIT", "-5"),
    ("NEWSDESK_TASK_TIME_LIMIT", "1"),  # the soft limit (at 0.9) would be no earlier than the hard one
    ("NEWSDESK_WORKER_CONCURRENCY", "0"),  # Celery took cpu_count()
    ("NEWSDESK_RATE_LIMIT", "lots"),  # limiting silently off, a traceback per request
    ("NEWSDESK_RATE_LIMIT", "0/minute"),
    ("NEWSDESK_RATE_LIMIT_STORAGE", "nope://somewhere"),
    ("NEWSDESK_RATE_LIMIT_STORAGE", "async+memory://"),
    ("NEWSDESK_MAX_BODY_BYTES", "-1"),
    ("NEWSDESK_MAX_BODY_BYTES", "0"),
    ("NEWSDESK_MAX_TEXT_CHARS", "0"),
    ("NEWSDESK_SWEEP_INTERVAL", "0"),
    ("NEWSDESK_SWEEP_INTERVAL", "-1"),
    ("NEWSDESK_SWEEP_INTERVAL", "nan"),
    ("NEWSDESK_REDIS_TIMEOUT", "0"),
    ("NEWSDESK_REDIS_TIMEOUT", "nan"),
    ("NEWSDESK_REDIS_TIMEOUT", "-inf"),
    ("NEWSDESK_WEBHOOK_MAX_ATTEMPTS", "-1"),
    ("NEWSDESK_WEBHOOK_MAX_ATTEMPTS", "0"),
    ("NEWSDESK_WEBHOOK_BACKOFF", "-1"),
    ("NEWSDESK_WEBHOOK_BACKOFF", "nan"),
    ("NEWSDESK_WEBHOOK_BACKOFF_MAX", "-1"),
    ("NEWSDESK_WEBHOOK_TIMEOUT", "-1"),
    ("NEWSDESK_WEBHOOK_TIMEOUT", "0"),
    ("NEWSDESK_WEBHOOK_ALLOW_PRIVATE", "maybe"),
    ("NEWSDESK_LOG_LEVEL", "LOUD"),
    ("NEWSDESK_LOG_FORMAT", "xml"),
    ("REDIS_URL", "not a url"),
    ("REDIS_URL", "http://localhost:6379/0"),
    ("REDIS_URL", "unix:///run/redis.sock"),  # redis-py takes it, the Celery broker does not
    ("REDIS_URL", "redis://localhost:99999/0"),
    ("REDIS_URL", "redis://localhost:6379/zero"),  # redis-py would use database 0 silently
    ("NEWSDESK_KEY_PREFIX", "news desk"),
    ("NEWSDESK_KEY_PREFIX", "news*"),
    ("NEWSDESK_SUMMARY_SENTENCES", "0"),
    ("NEWSDESK_SUMMARY_SENTENCES", "21"),
    ("NEWSDESK_STANCE_SCORER", "bert"),
    ("NEWSDESK_DUPLICATE_THRESHOLD", "1.5"),
    ("NEWSDESK_DUPLICATE_THRESHOLD", "nan"),
    ("NEWSDESK_DUPLICATE_MIN_SIMILARITY", "-0.1"),
    ("NEWSDESK_PARTIAL_THRESHOLD", "0"),
    ("NEWSDESK_ANALYSIS_QUEUES", "sentiment=stance"),
    ("NEWSDESK_VISIBILITY_TIMEOUT", "0"),
    ("NEWSDESK_TRUSTED_PROXIES", "-1"),
    ("NEWSDESK_MAX_BATCH", "0"),
    ("NEWSDESK_MAX_WAIT", "-1"),
    ("NEWSDESK_RESULT_TTL", "0"),
    ("NEWSDESK_RESULTS_STREAM_MAXLEN", "-1"),
    ("NEWSDESK_MAX_ATTEMPTS", "three"),
]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_a_bad_value_is_refused_in_one_line_naming_variable_value_and_range(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=r"must be") as refused:
        Settings.from_env({name: value})
    message = str(refused.value)
    assert message.startswith(f"{name}=")
    assert value in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("NEWSDESK_IDEMPOTENCY_TTL", "0", "NEWSDESK_IDEMPOTENCY_TTL=0: must be a whole number, at least 1"),
        (
            "NEWSDESK_LOG_LEVEL",
            "LOUD",
            "NEWSDESK_LOG_LEVEL='LOUD': must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
        ),
        (
            "NEWSDESK_MAX_BATCH",
            "1001",
            "NEWSDESK_MAX_BATCH=1001: must be a whole number from 1 to 1000",
        ),
        (
            "NEWSDESK_RATE_LIMIT",
            "lots",
            "NEWSDESK_RATE_LIMIT='lots': must be off, or limits in Flask-Limiter's notation such as "
            "600/minute or 10/second;600/hour (couldn't parse rate limit string 'lots')",
        ),
    ],
)
def test_the_message_says_what_is_allowed(name: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        Settings.from_env({name: value})


def test_a_refused_url_does_not_show_its_password() -> None:
    for name, url in [
        ("REDIS_URL", "redis://:hunter2@localhost:99999/0"),
        ("NEWSDESK_RATE_LIMIT_STORAGE", "nope://:hunter2@localhost:6379/0"),
    ]:
        with pytest.raises(ValueError, match=name) as refused:
            Settings.from_env({name: url})
        assert "hunter2" not in str(refused.value)
        assert ":***@localhost" in str(refused.value)


def test_ranges_hold_for_settings_built_in_code_too() -> None:
    with pytest.raises(ValueError, match="NEWSDESK_STUCK_AFTER=nan"):
        Settings(stuck_after=float("nan"))


def test_the_cross_field_checks_remain() -> None:
    with pytest.raises(ValueError, match="more than twice NEWSDESK_TASK_TIME_LIMIT"):
        Settings.from_env({"NEWSDESK_TASK_TIME_LIMIT": "500"})
    with pytest.raises(ValueError, match="NEWSDESK_STUCK_AFTER must exceed"):
        Settings.from_env({"NEWSDESK_STUCK_AFTER": "100"})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("NEWSDESK_TASK_TIME_LIMIT", "2"),  # soft limit 1 s: the integration tests' shortest
        ("NEWSDESK_RATE_LIMIT", "off"),
        ("NEWSDESK_RATE_LIMIT", "OFF"),
        ("NEWSDESK_RATE_LIMIT", "10/second;600/hour"),
        ("NEWSDESK_RATE_LIMIT_STORAGE", "memory://"),
        ("NEWSDESK_RATE_LIMIT_STORAGE", "redis+sentinel://localhost:26379/mymaster"),
        ("REDIS_URL", "rediss://:secret@redis.internal:6380/2"),
        ("REDIS_URL", "redis://localhost"),
        ("NEWSDESK_ANALYSIS_QUEUES", "stance=stance, duplicates=cheap"),
        ("NEWSDESK_RESULTS_STREAM_MAXLEN", "0"),  # the stream off
        ("NEWSDESK_MAX_WAIT", "0"),
        ("NEWSDESK_MAX_BATCH", "1000"),
        ("NEWSDESK_DUPLICATE_MIN_SIMILARITY", "0"),
        ("NEWSDESK_WEBHOOK_BACKOFF", "0.2"),
        ("NEWSDESK_KEY_PREFIX", "test-1a2b:staging"),
    ],
)
def test_values_at_the_edges_of_their_ranges_are_taken(name: str, value: str) -> None:
    Settings.from_env({name: value})


def test_every_default_is_within_its_range() -> None:
    defaults = Settings()  # the checks run on the defaults too
    for spec in fields(Settings):
        default = getattr(defaults, spec.name)
        if default is None or isinstance(default, Path) or default == "":
            continue  # unset: nothing to read back
        written = str(default).lower() if isinstance(default, bool) else str(default)
        assert getattr(Settings.from_env({spec.metadata["env"]: written}), spec.name) == default


def test_every_setting_declares_what_it_takes() -> None:
    # Free text checked elsewhere: the API keys (Settings.api_key_hashes), the worker's queues (against
    # the queue layout, by `newsdesk worker`), the webhook secret (any text), the seeds folder (where
    # it is loaded).
    unchecked = {"api_keys", "worker_queues", "webhook_secret", "seeds_dir", "webhook_allow_private"}
    for spec in fields(Settings):
        if spec.name not in unchecked:
            assert {"minimum", "choices", "check"} & set(spec.metadata), spec.name


def test_the_summary_limit_is_the_analysis_limit() -> None:
    assert MAX_SUMMARY_SENTENCES == MAX_SENTENCES


def test_log_level_names_are_taken_in_any_case() -> None:
    assert Settings.from_env({"NEWSDESK_LOG_LEVEL": "debug"}).log_level == "DEBUG"
