"""The API's gunicorn worker answers what gunicorn refuses in problem+json, with gunicorn's own statuses.

ProblemWorker overrides gunicorn's Worker.handle_error (see newsdesk/gunicorn_app.py): these tests fail when
an upgrade of gunicorn changes what that override relies on: the method's call, the error classes and
the status gunicorn gives each.
"""

from __future__ import annotations

import inspect
import json
import socket
import ssl
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from gunicorn.http import errors
from gunicorn.workers.base import Worker
from gunicorn.workers.gthread import ThreadWorker

from newsdesk.gunicorn_app import (
    LIMIT_REQUEST_FIELD_SIZE,
    LIMIT_REQUEST_FIELDS,
    LIMIT_REQUEST_LINE,
    ProblemWorker,
    refusal,
)

CFG = SimpleNamespace(
    limit_request_line=LIMIT_REQUEST_LINE,
    limit_request_fields=LIMIT_REQUEST_FIELDS,
    limit_request_field_size=LIMIT_REQUEST_FIELD_SIZE,
)
# Every exception class gunicorn's HTTP parser defines, and the TLS error its workers pass on too.
GUNICORN_ERRORS: list[type[BaseException]] = [
    *sorted(
        (
            value
            for value in vars(errors).values()
            if isinstance(value, type) and issubclass(value, BaseException)
        ),
        key=lambda cls: cls.__name__,
    ),
    ssl.SSLError,
]


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = socket.socketpair()
    client.settimeout(5)
    with server, client:
        yield server, client


def answer(client: socket.socket) -> tuple[int, dict[str, str], bytes]:
    received = client.recv(65536)  # written whole, without blocking, before handle_error returned
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split(" ")[1]), headers, body


def gunicorns_status(exc: BaseException, pair: tuple[socket.socket, socket.socket]) -> int:
    """The status gunicorn's own handle_error answers for the exception, read off the page it writes."""
    worker = SimpleNamespace(log=mock.Mock(), cfg=CFG)
    Worker.handle_error(worker, None, pair[0], ("127.0.0.1", 5000), exc)
    return answer(pair[1])[0]


def problem_worker() -> tuple[ProblemWorker, mock.Mock]:
    worker = ProblemWorker.__new__(ProblemWorker)  # the method needs only these two of its attributes
    worker.cfg = CFG
    worker.log = mock.Mock()
    return worker, worker.log


@pytest.mark.parametrize("error", GUNICORN_ERRORS, ids=lambda cls: cls.__name__)
def test_each_gunicorn_error_gets_the_status_gunicorn_gives_it(
    error: type[BaseException], pair: tuple[socket.socket, socket.socket]
) -> None:
    # A new class, or a status gunicorn changed, fails here: refusal() has to learn it.
    exc = error("x")
    problem = refusal(exc, CFG)
    assert (problem.status if problem else 500) == gunicorns_status(exc, pair)


def test_the_overridden_method_is_the_one_gunicorns_worker_calls() -> None:
    # gthread's handle() calls self.handle_error(req, sock, client, exc) where it used to write HTML.
    assert "self.handle_error(req, conn.sock, conn.client, e)" in inspect.getsource(ThreadWorker.handle)
    assert list(inspect.signature(Worker.handle_error).parameters) == ["self", "req", "client", "addr", "exc"]
    assert ProblemWorker.handle_error is not Worker.handle_error
    assert issubclass(ProblemWorker, ThreadWorker)


@pytest.mark.parametrize(
    ("exc", "status", "slug", "detail"),
    [
        (
            errors.LimitRequestLine(5000, LIMIT_REQUEST_LINE),
            414,
            "request-line-too-long",
            f"The request line is longer than {LIMIT_REQUEST_LINE} bytes",
        ),
        (
            errors.LimitRequestHeaders("limit request headers fields size"),
            431,
            "headers-too-large",
            f"A header field is longer than {LIMIT_REQUEST_FIELD_SIZE} bytes",
        ),
        (
            errors.LimitRequestHeaders("limit request headers fields"),
            431,
            "headers-too-large",
            f"The request has more than {LIMIT_REQUEST_FIELDS} header fields",
        ),
        (  # gunicorn's check of the whole head, or words a later gunicorn may use: both limits named
            errors.LimitRequestHeaders("max buffer headers"),
            431,
            "headers-too-large",
            "The request's header fields are more than this server reads: at most "
            f"{LIMIT_REQUEST_FIELDS} fields of at most {LIMIT_REQUEST_FIELD_SIZE} bytes each.",
        ),
        (errors.InvalidRequestLine("\x00" * 10), 400, "malformed-request", "The request line is not"),
        (errors.InvalidHeader("CONTENT-LENGTH"), 400, "malformed-request", "A header field is malformed"),
        (errors.UnsupportedTransferCoding("br"), 501, "unsupported-transfer-coding", "A request body may"),
    ],
)
def test_a_refusal_is_written_as_problem_json(
    exc: BaseException, status: int, slug: str, detail: str, pair: tuple[socket.socket, socket.socket]
) -> None:
    worker, log = problem_worker()
    worker.handle_error(None, pair[0], ("127.0.0.1", 5000), exc)

    answered, headers, body = answer(pair[1])
    assert answered == status
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)
    assert headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    problem: dict[str, Any] = json.loads(body)
    assert problem["type"] == f"urn:newsdesk:problem:{slug}"
    assert problem["status"] == status
    assert problem["detail"].startswith(detail)
    assert "\x00" not in problem["detail"]  # the request is not echoed
    log.warning.assert_called_once()
    assert log.warning.call_args.kwargs["extra"]["status"] == status
    log.exception.assert_not_called()


@pytest.mark.parametrize(
    "exc",
    [errors.InvalidResponseHeader("X-Bad\r\n"), errors.ConfigurationProblem("SCRIPT_NAME"), ValueError("x")],
    ids=["a header the app sent", "gunicorn's configuration", "anything else"],
)
def test_a_fault_of_the_service_is_a_500_that_says_nothing_more(
    exc: BaseException, pair: tuple[socket.socket, socket.socket]
) -> None:
    worker, log = problem_worker()
    worker.handle_error(None, pair[0], ("127.0.0.1", 5000), exc)

    answered, headers, body = answer(pair[1])
    assert answered == 500
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body) == {
        "type": "urn:newsdesk:problem:internal-error",
        "title": "Internal server error",
        "status": 500,
        "detail": "The error was logged; please retry later.",
    }
    log.exception.assert_called_once()  # with the stack, as an error of the app's own is


def test_a_client_gone_before_the_answer_is_not_an_error(pair: tuple[socket.socket, socket.socket]) -> None:
    worker, log = problem_worker()
    pair[1].close()
    pair[0].close()
    worker.handle_error(None, pair[0], None, errors.InvalidRequestLine("x"))  # a closed socket, no address
    log.debug.assert_called_once()
