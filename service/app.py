"""The Flask application factory: configuration, services, routes, request guards and headers."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
import swagger_ui_bundle
from flask import Flask, Response, g, redirect, request, send_from_directory
from flask_limiter import HeaderNames, Limiter, RateLimitExceeded
from limits.errors import StorageError
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response as BaseResponse

from newsdesk.settings import Settings
from newsdesk.store import Store
from service.app_context import Services, services
from service.auth import ANONYMOUS, identify, unauthorized
from service.body import read_json_body
from service.long_polls import LongPolls
from service.metrics import install_metrics
from service.problems import Problem, ProblemApi
from service.queue import ArticleQueue, CeleryQueue
from service.views import articles, batches, health, seeds

log = logging.getLogger(__name__)

_DESCRIPTION = (
    "Submit news articles; poll for an extractive summary, stance toward the United States, Russia and "
    "the United Nations, and near-duplicates among stored seed articles."
)
_SWAGGER_ASSETS = Path(swagger_ui_bundle.swagger_ui_path)
# On every response; newsdesk/gunicorn_app.py adds them to the answers gunicorn gives itself too.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
API_CSP = "default-src 'none'; frame-ancestors 'none'"
# The docs page runs Swagger UI's scripts and one inline bootstrap script, all served from here.
_DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'"
)


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    queue: ArticleQueue | None = None,
    long_polls: LongPolls | None = None,
) -> Flask:
    """Build the API. Tests pass their own settings, store (over fakeredis) or queue; gunicorn passes
    the bound on long-polls that its threads allow."""
    settings = settings or Settings.from_env()
    app = Flask("newsdesk")
    # Werkzeug answers "/v1//articles" with an HTML 308 redirect that bypasses the error handlers;
    # without merging it is a plain problem+json 404 like any other unknown path.
    app.url_map.merge_slashes = False
    if settings.trusted_proxies:
        # The client's address (for rate limits and logs) and scheme, as the trusted proxies saw them.
        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    app.config.update(
        API_TITLE="newsdesk",
        API_VERSION="v1",
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL="/docs/assets/",
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        API_SPEC_OPTIONS={
            "info": {"description": _DESCRIPTION},
            # Keys are optional: needed only where the service is configured with NEWSDESK_API_KEYS.
            "security": [{"bearerAuth": []}, {}],
            "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
        },
    )
    app.extensions["newsdesk"] = Services(
        settings=settings,
        api_keys=settings.api_key_hashes(),
        store=store or Store.from_settings(settings),
        queue=queue or CeleryQueue(settings),
        long_polls=long_polls or LongPolls(),
    )
    api = ProblemApi(app)
    api.register_blueprint(articles.blp)
    api.register_blueprint(batches.blp)
    api.register_blueprint(seeds.blp)
    api.register_blueprint(health.blp)

    # Flask runs these hooks in the order they are registered. The caller is identified first (the
    # limit is per key), then the limiter counts the request, and only then may it be refused for its
    # key or body: a refusal costs the client its budget like any request, so a client over its limit
    # gets a 429 whatever else is wrong, and neither key guessing nor parsing bodies is unbounded.
    app.before_request(_identify_caller)
    limiter = _rate_limiter(settings)
    limiter.init_app(app)
    app.before_request(_check_key_and_body)
    app.register_error_handler(RateLimitExceeded, lambda error: _too_many_requests(limiter, error))
    app.after_request(_add_headers)
    install_metrics(app, app.extensions["newsdesk"])
    app.add_url_rule("/docs/assets/<path:filename>", "docs_assets", _docs_asset)
    app.add_url_rule("/", "index", lambda: redirect("/docs"))
    return app


def _rate_limiter(settings: Settings) -> Limiter:
    """One budget per API key (or client address) across every /v1 route, counted in Redis."""
    storage_uri = settings.rate_limit_storage or settings.redis_url
    prefix = f"{settings.key_prefix}:ratelimit"
    # A Redis storage puts its own prefix (LIMITS by default) before every key: ours instead, so that the
    # limiter's keys too start with NEWSDESK_KEY_PREFIX. Other storages take no such option (memcached's
    # and MongoDB's pass theirs to their clients); Flask-Limiter's prefix, inside the key, serves them.
    if _is_redis_storage(storage_uri):
        storage_options: dict[str, str | int] = {"key_prefix": prefix}
        limiter_prefix = ""
    else:
        storage_options, limiter_prefix = {}, prefix
    limiter = Limiter(
        key_func=_limit_key,
        application_limits=[settings.rate_limit] if settings.rate_limited else [],
        application_limits_exempt_when=lambda: not request.path.startswith("/v1/"),
        storage_uri=storage_uri,
        storage_options=storage_options,
        key_prefix=limiter_prefix,
        strategy="moving-window",
        headers_enabled=True,
        # Flask-Limiter would put the window's reset in Retry-After on every response, overwriting the
        # API's own (poll in 1 s, come back in 30 s); it goes in a header of its own, and a 429 gets
        # its Retry-After from _too_many_requests.
        header_name_mapping={HeaderNames.RETRY_AFTER: "X-RateLimit-Retry-After"},
        enabled=settings.rate_limited,
        # With Redis down the limiter fails open, and the request meets the store's own 503; otherwise
        # its header injection would turn that 503 into a 500 while the response is being finished.
        swallow_errors=True,
    )
    limiter.logger.addFilter(LIMITER_OUTAGE_LOG)  # one logger for every Limiter; added once
    return limiter


def _is_redis_storage(uri: str) -> bool:
    from limits.storage import SCHEMES, RedisStorage  # type: ignore[attr-defined]  # noqa: PLC0415

    storage = SCHEMES.get(urlsplit(uri).scheme)
    return storage is not None and issubclass(storage, RedisStorage)


class LimiterOutageLog(logging.Filter):
    """Flask-Limiter logs each request it could not count (swallow_errors) with the whole traceback, at
    ERROR: 3-5 KB a request while Redis is down, enough to rotate the outage's start out of the logs.
    A failure of its storage is logged instead as one short line, at most once per `interval` seconds
    per process, with how many went unlogged since the last line. Other errors keep their traceback."""

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()  # gunicorn's threads share the process's filter
        self._last: float | None = None
        self._unlogged = 0

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, redis.RedisError | StorageError):
            return True
        with self._lock:
            now = self.clock()
            if self._last is not None and now - self._last < self.interval:
                self._unlogged += 1
                return False
            self._last, unlogged, self._unlogged = now, self._unlogged, 0
        record.msg, record.args = "rate limiting is off until Redis answers: the limiter's storage failed", ()
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.__dict__.update(error=type(error).__name__, unlogged=unlogged)
        return True


# One per process, as the logger it filters: its interval holds across app instances.
LIMITER_OUTAGE_LOG = LimiterOutageLog()


def _too_many_requests(limiter: Limiter, error: RateLimitExceeded) -> Response:
    current = limiter.current_limit
    wait = max(1, math.ceil(current.reset_at - time.time())) if current else 60
    return Problem(
        429,
        "too-many-requests",
        "Too many requests",
        f"Over the limit of {error.limit.limit} for this key or address.",
        headers={"Retry-After": str(wait)},
    ).response()


def _limit_key() -> str:
    """A valid API key's own budget, else the client address's (no keys configured, or a missing or
    wrong key: guesses are limited where they come from). The prefixes keep a key named like an
    address from sharing that address's budget."""
    owner = g.get("owner")
    if owner:
        return f"key:{owner}"
    return f"address:{request.remote_addr or 'unknown'}"


def _identify_caller() -> None:
    g.started = time.perf_counter()
    g.json_body = None
    g.owner = ANONYMOUS
    if not request.path.startswith("/v1/"):
        return  # health, docs, the OpenAPI document: open to all
    g.owner = identify(request, services().api_keys)  # None: no valid key, refused after the limiter


def _check_key_and_body() -> None:
    if not request.path.startswith("/v1/"):
        return
    if g.owner is None:
        raise unauthorized(request)
    # Only for a request that reached a route: an unknown path is a 404 whatever its body.
    if request.method in {"POST", "PUT", "PATCH"} and request.routing_exception is None:
        g.json_body = read_json_body(request)


def _docs_asset(filename: str) -> Response:
    return send_from_directory(_SWAGGER_ASSETS, filename, max_age=3600)


def _log_request(response: BaseResponse) -> None:
    duration = (time.perf_counter() - g.started) * 1000 if "started" in g else None
    fields: dict[str, Any] = {
        "method": request.method,
        "path": request.path,
        "status": response.status_code,
        "duration_ms": round(duration, 1) if duration is not None else None,
        "remote": request.remote_addr,
    }
    article_id = (request.view_args or {}).get("article_id")
    if article_id is not None:
        fields["article_id"] = article_id
    log.info("request", extra=fields)


def _add_headers(response: BaseResponse) -> Any:
    _log_request(response)
    response.headers.update(SECURITY_HEADERS)
    is_docs = request.path.startswith("/docs")
    response.headers.setdefault("Content-Security-Policy", _DOCS_CSP if is_docs else API_CSP)
    if not is_docs:
        response.headers.setdefault("Cache-Control", "no-store")
    return response
