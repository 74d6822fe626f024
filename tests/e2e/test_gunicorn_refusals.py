"""Requests gunicorn refuses before the app sees them are answered in problem+json like every other error.

Each request is written on a raw socket: httpx would refuse to send most of them.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from newsdesk.gunicorn_app import LIMIT_REQUEST_FIELD_SIZE, LIMIT_REQUEST_FIELDS, LIMIT_REQUEST_LINE
from tests.conftest import ServiceProcess

pytestmark = pytest.mark.e2e

PROBLEM = "urn:newsdesk:problem:"


@pytest.fixture(scope="module")
def api(start_api: Callable[..., tuple[ServiceProcess, str]]) -> tuple[ServiceProcess, str]:
    return start_api()  # stopped by start_api at the end of the session


def exchange(url: str, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read until the server closes; the status, headers (lower-cased names) and body."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(raw)
        received = bytearray()
        while chunk := sock.recv(65536):  # the server closes the connection after such an answer
            received += chunk
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    version, status, _ = status_line.split(" ", 2)
    assert version == "HTTP/1.1"
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status), headers, body


def _request(target: str = "/v1/seeds", *extra_headers: str, line: str | None = None) -> bytes:
    lines = [line or f"GET {target} HTTP/1.1", "Host: 127.0.0.1", *extra_headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


CASES: dict[str, tuple[bytes, int, str, str, str]] = {
    # A path longer than the request line may be, as a client that put a whole text in the URL would.
    "request line too long": (
        _request("/v1/articles/" + "a" * 5000),
        414,
        "request-line-too-long",
        "Request line too long",
        f"The request line is longer than {LIMIT_REQUEST_LINE} bytes",
    ),
    "header field too long": (
        _request("/v1/seeds", "Idempotency-Key: " + "k" * 9000),
        431,
        "headers-too-large",
        "Request header fields too large",
        f"A header field is longer than {LIMIT_REQUEST_FIELD_SIZE} bytes",
    ),
    "too many header fields": (
        _request("/v1/seeds", *(f"X-Extra-{n}: {n}" for n in range(LIMIT_REQUEST_FIELDS + 1))),
        431,
        "headers-too-large",
        "Request header fields too large",
        f"The request has more than {LIMIT_REQUEST_FIELDS} header fields",
    ),
    "malformed request line": (
        _request(line="HELLO"),
        400,
        "malformed-request",
        "Malformed request line",
        "The request line is not",
    ),
    "invalid method": (
        _request(line="G(E)T /v1/seeds HTTP/1.1"),
        400,
        "malformed-request",
        "Invalid request method",
        "The request method is not",
    ),
    "unsupported HTTP version": (
        _request(line="GET /v1/seeds HTTP/3.0"),
        400,
        "malformed-request",
        "Unsupported HTTP version",
        "This server speaks HTTP/1.0 and HTTP/1.1",
    ),
    "header without a colon": (
        _request("/v1/seeds", "Idempotency-Key abc"),
        400,
        "malformed-request",
        "Malformed header field",
        "A header field is malformed",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_request_gunicorn_refuses_is_answered_in_problem_json(
    api: tuple[ServiceProcess, str], case: str
) -> None:
    process, url = api
    raw, status, slug, title, detail = CASES[case]

    answered, headers, body = exchange(url, raw)

    assert answered == status
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"  # as gunicorn's own page: the connection is not reused
    assert int(headers["content-length"]) == len(body)
    assert headers["x-content-type-options"] == "nosniff"  # the headers every response carries
    assert headers["cache-control"] == "no-store"
    problem: dict[str, Any] = json.loads(body)
    assert problem["type"] == PROBLEM + slug
    assert problem["title"] == title
    assert problem["status"] == status
    assert problem["detail"].startswith(detail)
    assert set(problem) == {"type", "title", "status", "detail"}
    # Nothing of the server's internals, and nothing of the request echoed back.
    assert b"gunicorn" not in body.lower()
    assert b"<html" not in body.lower()
    assert b"aaaa" not in body
    assert b"kkkk" not in body
    # The process goes on serving, and logged the refusal as a warning, not as a fault with a stack.
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    assert f'event="request refused" status={status} problem={slug}' in process.log()
    assert "Traceback" not in process.log()


def test_a_malformed_chunked_body_is_the_clients_fault(api: tuple[ServiceProcess, str]) -> None:
    # gunicorn reads a chunked body only as the app asks for it, so its refusal of a bad chunk size
    # reaches the app, which answers it as a 400 rather than a fault of its own.
    process, url = api
    raw = (
        b"POST /v1/articles HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
    )
    answered, headers, body = exchange(url, raw)
    assert answered == 400
    assert headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert (problem["type"], problem["title"]) == (PROBLEM + "malformed-request", "Malformed request body")
    assert "Traceback" not in process.log()
