"""Errors as RFC 9457 problem details (`application/problem+json`), one shape for every error.

Views raise `Problem` (or let werkzeug's HTTP exceptions through); the Api's error handler renders
both, and the OpenAPI document describes them with `ProblemSchema`.
"""

from __future__ import annotations

import http
import logging
from collections.abc import Mapping
from typing import Any, Literal

import marshmallow as ma
import redis
from flask import Flask, Response, json, request
from flask_smorest import Api
from flask_smorest.utils import prepare_response
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)

PROBLEM_MIMETYPE = "application/problem+json"
_TYPE_PREFIX = "urn:newsdesk:problem:"


class FieldErrorSchema(ma.Schema):
    field = ma.fields.String(
        required=True, metadata={"description": "Path to the field, dotted (`options.summary_sentences`)"}
    )
    message = ma.fields.String(required=True)


class ProblemSchema(ma.Schema):
    class Meta:
        unknown = ma.INCLUDE  # problem details may carry extension members (RFC 9457, section 3.2)

    type = ma.fields.String(required=True, metadata={"description": "A URN naming the kind of problem"})
    title = ma.fields.String(required=True)
    status = ma.fields.Integer(required=True)
    detail = ma.fields.String()
    instance = ma.fields.String()
    errors = ma.fields.List(
        ma.fields.Nested(FieldErrorSchema), metadata={"description": "Each invalid field"}
    )
    id = ma.fields.String(metadata={"description": "The article concerned, where there is one"})


# A body can name thousands of bad fields; the answer lists the first few, with clipped names, so an
# error stays small whatever was sent.
MAX_LISTED_ERRORS = 50
MAX_FIELD_CHARS = 200


class Problem(Exception):
    """An error with an HTTP status, a stable kind (`slug`) and a human explanation."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str | None = None,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.slug = slug
        self.title = title
        if errors is not None and len(errors) > MAX_LISTED_ERRORS:
            listed = f"The first {MAX_LISTED_ERRORS} of {len(errors)} errors are listed."
            detail = f"{detail} {listed}" if detail else listed
            errors = errors[:MAX_LISTED_ERRORS]
        self.detail = detail
        self.errors = errors
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def document(self, instance: str | None = None) -> dict[str, Any]:
        """The problem's JSON body; outside a request too (gunicorn's refusals have no Flask request)."""
        body: dict[str, Any] = {"type": _TYPE_PREFIX + self.slug, "title": self.title, "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        if instance is not None:
            body["instance"] = instance
        if self.errors is not None:
            body["errors"] = self.errors
        body.update(self.extra)
        return body

    def response(self) -> Response:
        body = self.document(instance=request.path)
        response = Response(json.dumps(body), status=self.status, mimetype=PROBLEM_MIMETYPE)
        response.headers.update(self.headers)
        return response


def field_errors(messages: Mapping[str, Any], prefix: str = "") -> list[dict[str, str]]:
    """Flatten marshmallow's nested error messages into one entry per field path."""
    flat: list[dict[str, str]] = []
    for key, value in messages.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if len(path) > MAX_FIELD_CHARS:
            path = path[: MAX_FIELD_CHARS - 1] + "…"
        if isinstance(value, Mapping):
            flat.extend(field_errors(value, path))
        else:
            for message in value if isinstance(value, list) else [value]:
                if isinstance(message, Mapping):
                    flat.extend(field_errors(message, path))
                else:
                    flat.append({"field": path, "message": str(message)})
    return flat


_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    413: "body-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    429: "too-many-requests",
    503: "unavailable",
}


# One title per problem type (RFC 9457); the detail says where the invalid fields are.
VALIDATION_TITLE = "The request is not valid"
_INVALID_DETAIL = {
    "body": "See `errors` for each invalid field of the body.",
    "query": "See `errors` for each invalid query parameter.",
    "article": "See `errors` for each invalid field of this article.",
}


def invalid(errors: list[dict[str, str]], where: Literal["body", "query", "article"]) -> Problem:
    """The 422 of a body, a query or a batch's article that breaks the schema: one entry per field."""
    return Problem(422, "validation-error", VALIDATION_TITLE, _INVALID_DETAIL[where], errors=errors)


def from_http_exception(error: HTTPException) -> Problem:
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    messages = data.get("messages")
    if status == 422 and messages:
        # webargs nests messages under the location ("json" or "query"); the field path is what clients
        # need, the same wherever the check was made.
        if not isinstance(messages, Mapping):
            messages = {"json": {"_schema": messages}}
        in_query = "query" in messages and "json" not in messages
        inner = messages.get("query" if in_query else "json", messages)
        return invalid(field_errors(inner), "query" if in_query else "body")
    if status >= 500:
        return Problem(
            status, "internal-error", "Internal server error", "The error was logged; please retry later."
        )
    detail = error.description if isinstance(error.description, str) else None
    # Keep what the exception itself says in headers (Allow on a 405), but not its content type.
    headers = {name: value for name, value in error.get_headers() if name.lower() != "content-type"}
    headers.update(data.get("headers") or {})
    return Problem(status, _SLUGS.get(status, "http-error"), error.name, detail, headers=headers)


class ProblemApi(Api):  # type: ignore[misc]
    """flask-smorest's Api with problem+json errors."""

    ERROR_SCHEMA = ProblemSchema

    def _register_error_handlers(self) -> None:
        app: Flask = self._app
        app.register_error_handler(HTTPException, self.handle_http_exception)
        app.register_error_handler(Problem, lambda problem: problem.response())
        app.register_error_handler(redis.RedisError, _redis_unavailable)
        app.register_error_handler(Exception, _unexpected)

    def _register_responses(self) -> None:
        """Document every error response (422, default) as problem+json."""
        for status in http.HTTPStatus:
            if status >= 400:
                response = {"description": status.phrase, "schema": self.ERROR_SCHEMA}
                prepare_response(response, self.spec, PROBLEM_MIMETYPE)
                self.spec.components.response(status.name, response, lazy=True)
        response = {"description": "Error", "schema": self.ERROR_SCHEMA}
        prepare_response(response, self.spec, PROBLEM_MIMETYPE)
        self.spec.components.response("DEFAULT_ERROR", response, lazy=True)

    def handle_http_exception(self, error: HTTPException) -> Response:
        return from_http_exception(error).response()


def redis_unavailable_problem() -> Problem:
    return Problem(
        503,
        "storage-unavailable",
        "Storage is unavailable",
        "The service cannot reach its Redis store; nothing was stored. Retry shortly.",
        headers={"Retry-After": "5"},
    )


def _redis_unavailable(error: redis.RedisError) -> Response:
    # Redis at its maxmemory with noeviction (deploy/redis.conf): an operator has to make room. The rate
    # limiter's script reports it as a plain ResponseError, so the reply's text decides.
    if isinstance(error, redis.OutOfMemoryError) or "OOM command not allowed" in str(error):
        log.error("redis full", extra={"path": request.path})
        return Problem(
            503,
            "storage-full",
            "Storage is full",
            "The service's Redis store has reached its memory limit; nothing was stored. Retry later.",
            headers={"Retry-After": "60"},
        ).response()
    log.warning("redis unavailable", extra={"error": type(error).__name__, "path": request.path})
    return redis_unavailable_problem().response()


def _unexpected(error: Exception) -> Response:
    if isinstance(error, HTTPException):  # pragma: no cover - routed to handle_http_exception first
        return from_http_exception(error).response()
    log.exception("unhandled error", extra={"path": request.path})
    return from_http_exception(InternalServerError()).response()
