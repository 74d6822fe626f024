"""Strict JSON request bodies: the right media type, within the size limit, valid UTF-8 and plain JSON.

Python's json module accepts NaN and Infinity, lone UTF-16 surrogates and duplicate keys, and recurses
without bound; each would later surface as a confusing error or a 500. They are refused here, once,
with a 400 that says what is wrong. Views get the parsed body through `Blueprint.arguments`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import flask_smorest
import marshmallow as ma
from flask import Request, g
from gunicorn.http.errors import ParseException
from webargs import core
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import RequestEntityTooLarge

from service.problems import PROBLEM_MIMETYPE, Problem, ProblemSchema

log = logging.getLogger(__name__)

MAX_DEPTH = 32
# No number the API takes needs more digits; Python's own cap (4,300) would answer in its words.
MAX_INTEGER_DIGITS = 100


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise ValueError(f"a number has more than {MAX_INTEGER_DIGITS} digits")
    return int(digits)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _check(value: Any, depth: int = 0) -> None:
    """Walk the parsed value: bounded nesting, no lone surrogates in keys or strings."""
    if depth > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        value.encode("utf-8")  # raises UnicodeEncodeError on a lone surrogate
    elif isinstance(value, dict):
        for key, item in value.items():
            key.encode("utf-8")
            _check(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check(item, depth + 1)


def _bad_json(detail: str) -> Problem:
    return Problem(400, "malformed-json", "The request body is not valid JSON", detail)


def _too_large(limit: int | None) -> Problem:
    """The same 413 whether the size was declared (Content-Length) or found by reading (chunked)."""
    return Problem(
        413,
        "body-too-large",
        "Request body too large",
        f"The body is over {limit} bytes (NEWSDESK_MAX_BODY_BYTES).",
    )


def _more_follows(request: Request) -> bool:
    """Whether a chunked body (no Content-Length) goes on past the bytes read: Werkzeug stops reading at
    MAX_CONTENT_LENGTH without refusing, so a body of exactly the limit and a longer one look alike."""
    return bool(request.environ["wsgi.input"].read(1))


def read_json_body(request: Request) -> Any:
    """The parsed JSON body of a request, or a Problem (400, 413, 415) saying why there is none."""
    if request.mimetype != "application/json" and not request.mimetype.endswith("+json"):
        raise Problem(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            f"Send the body as application/json, not {request.mimetype or 'no Content-Type'}.",
        )
    limit = request.max_content_length
    try:
        raw = request.get_data(cache=True)
        past_limit = request.content_length is None and limit is not None and len(raw) >= limit
        if past_limit and _more_follows(request):
            raise _too_large(limit)
    except RequestEntityTooLarge as error:  # a Content-Length over the limit: nothing is read
        raise _too_large(limit) from error
    except (ParseException, OSError) as error:
        # gunicorn reads a chunked body only as the app asks for it, so its refusal of a malformed one (a
        # ParseException such as InvalidChunkSize, or NoMoreData, an OSError) and a connection lost
        # mid-body arrive here: the client's doing, not a fault of the service.
        log.info("unreadable request body", extra={"error": type(error).__name__})
        raise Problem(
            400,
            "malformed-request",
            "Malformed request body",
            "The body could not be read: its chunked encoding is not valid, or the connection failed.",
        ) from error
    if not raw.strip():
        raise _bad_json("The body is empty.")
    try:
        text = raw.decode("utf-8-sig" if raw.startswith(b"\xef\xbb\xbf") else "utf-8")
    except UnicodeDecodeError as error:
        raise _bad_json(f"The body is not UTF-8: invalid byte at position {error.start}.") from error
    try:
        value = json.loads(
            text, parse_constant=_reject_constant, parse_int=_parse_int, object_pairs_hook=_reject_duplicates
        )
        _check(value)
    except json.JSONDecodeError as error:
        raise _bad_json(f"{error.msg} at line {error.lineno}, column {error.colno}.") from error
    except RecursionError as error:
        raise _bad_json(f"The body is nested deeper than {MAX_DEPTH} levels.") from error
    except UnicodeEncodeError as error:
        raise _bad_json(
            "The body contains a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape)."
        ) from error
    except ValueError as error:
        message = str(error)
        raise _bad_json(f"{message[:1].upper()}{message[1:]}.") from error  # "NaN is ...", not "Nan is ..."
    return value


class _BodyParser(FlaskParser):
    """webargs parser that takes the body already read and checked by `read_json_body`.

    It also refuses a query parameter given more than once: no parameter of the API takes a list, and
    webargs would silently keep the first of `?status=done&status=failed`.
    """

    def _raw_load_json(self, req: Request) -> Any:
        body = g.get("json_body")
        return core.missing if body is None else body

    def load_querystring(self, req: Request, schema: ma.Schema) -> Any:
        repeated = {name: len(values) for name, values in req.args.lists() if len(values) > 1}
        if repeated:
            raise ma.ValidationError(
                {name: [f"Given {count} times; give it once."] for name, count in sorted(repeated.items())}
            )
        return super().load_querystring(req, schema)


class Blueprint(flask_smorest.Blueprint):  # type: ignore[misc]
    ARGUMENTS_PARSER = _BodyParser()

    def problem(self, status: int, description: str) -> Any:
        """Document an error response of a view, as problem+json."""
        return self.alt_response(
            status, schema=ProblemSchema, content_type=PROBLEM_MIMETYPE, description=description
        )
