"""Run the API under gunicorn from Python, with the settings `newsdesk api` was given."""

from __future__ import annotations

import json
import ssl
from typing import Any

from gunicorn import util
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger
from gunicorn.http import errors
from gunicorn.workers.gthread import ThreadWorker
from werkzeug.exceptions import InternalServerError
from werkzeug.http import HTTP_STATUS_CODES

from newsdesk.settings import API_GRACEFUL_TIMEOUT, Settings
from service.app import API_CSP, SECURITY_HEADERS, create_app
from service.long_polls import STOPPING, LongPolls, threads_left_free
from service.problems import PROBLEM_MIMETYPE, Problem, from_http_exception

# gunicorn's own limits on a request's head (its defaults), set explicitly: they bound what one request
# can make a worker read and hold before the app sees it. The README states them, and the answers past
# them name them.
LIMIT_REQUEST_LINE = 4094  # bytes of the request line: method, path and query, HTTP version
LIMIT_REQUEST_FIELDS = 100  # header fields in one request
LIMIT_REQUEST_FIELD_SIZE = 8190  # bytes of one header field's line: name, ": ", value and CRLF


def log_config(settings: Settings) -> dict[str, Any]:
    """gunicorn's own messages through the application's one-line formatter.

    Requests are logged by the app itself (with the article id bound), so gunicorn's access log is off.
    """
    formatter = "JsonFormatter" if settings.log_format == "json" else "KeyValueFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"line": {"()": f"newsdesk.logs.{formatter}"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "line", "stream": "ext://sys.stderr"}
        },
        "loggers": {
            "gunicorn.error": {"handlers": ["stderr"], "level": settings.log_level, "propagate": False}
        },
        "root": {"handlers": ["stderr"], "level": settings.log_level},
    }


class AppLogsRequests(Logger):  # type: ignore[misc]
    """gunicorn's logger without its access log, which the app's own request line replaces.

    gunicorn builds every request's access-log fields even when no handler will print them (whenever a
    logging configuration is given, as here); that alone cost a tenth of a small request's CPU.
    """

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return None


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings:  # a setting of a newer gunicorn than the one installed is moot
                self.cfg.set(key, value)

    def load(self) -> Any:
        return create_app(self.settings, long_polls=LongPolls(threads_left_free(self.options["threads"])))


# Subclasses of InvalidHeader(Name) raised for a header the app tried to send, and a path outside a
# configured SCRIPT_NAME: gunicorn calls these faults of the service (500), not of the client.
_FAULTS = (errors.InvalidResponseHeader, errors.InvalidResponseHeaderName, errors.ConfigurationProblem)

# What gunicorn raised -> status, problem type, title and detail; the first match wins. The statuses are
# gunicorn 27's (Worker.handle_error), so that a client gets the status it got before, in problem+json;
# tests/unit/core/test_gunicorn_app.py holds them against the installed gunicorn's, class by class.
# Nothing of the request is echoed back: the detail says which rule it broke. {line}, {fields} and
# {field_size} are the limits in force.
_REFUSALS: tuple[tuple[tuple[type[BaseException], ...], int, str, str, str], ...] = (
    (
        (errors.LimitRequestLine,),
        414,
        "request-line-too-long",
        "Request line too long",
        "The request line is longer than {line} bytes (method, path with query, HTTP version); send long"
        " input in a request body.",
    ),
    (
        (errors.LimitRequestHeaders,),
        431,
        "headers-too-large",
        "Request header fields too large",
        "The request's header fields are more than this server reads: at most {fields} fields of at most"
        " {field_size} bytes each.",
    ),
    (
        (errors.InvalidRequestLine,),
        400,
        "malformed-request",
        "Malformed request line",
        "The request line is not `METHOD /path HTTP/1.1` in printable ASCII.",
    ),
    (
        (errors.InvalidRequestMethod,),
        400,
        "malformed-request",
        "Invalid request method",
        "The request method is not 3 to 20 characters of a token, in upper case (such as GET or POST).",
    ),
    (
        (errors.InvalidHTTPVersion,),
        400,
        "malformed-request",
        "Unsupported HTTP version",
        "This server speaks HTTP/1.0 and HTTP/1.1.",
    ),
    (
        (errors.InvalidHeader, errors.InvalidHeaderName, errors.ObsoleteFolding),
        400,
        "malformed-request",
        "Malformed header field",
        "A header field is malformed or contradicts another: each is `Name: value` on one line ending in"
        " CRLF, with a token for a name and no control characters; a body's length is given once, by"
        " Content-Length or by a Transfer-Encoding that ends in chunked (HTTP/1.1), not both.",
    ),
    (
        (errors.UnsupportedTransferCoding,),
        501,
        "unsupported-transfer-coding",
        "Transfer coding not implemented",
        "A request body may be sent with Content-Length or Transfer-Encoding: chunked.",
    ),
    (
        (errors.ExpectationFailed,),
        417,
        "expectation-failed",
        "Expectation failed",
        "The only expectation this server meets is `Expect: 100-continue`.",
    ),
    (
        (errors.ForbiddenProxyRequest, ssl.SSLError),
        403,
        "forbidden",
        "Forbidden",
        "The connection is not accepted.",
    ),
    (
        (
            errors.InvalidProxyLine,
            errors.InvalidSchemeHeaders,
            errors.InvalidChunkSize,
            errors.ChunkMissingTerminator,
            errors.InvalidChunkExtension,
            errors.InvalidH2CPreface,
        ),
        400,
        "malformed-request",
        "Malformed request",
        "The request is not well-formed HTTP/1.1.",
    ),
)

# LimitRequestHeaders says which limit a head broke only in its message; these are gunicorn 27's
# (http/message.py). Another message (a future gunicorn's, or the whole head too large) keeps the
# detail above, which names both limits.
_HEADER_LIMIT_DETAILS = {
    "limit request headers fields size": (
        "A header field is longer than {field_size} bytes (its whole line: name, colon, value, line end)."
    ),
    "limit request headers fields": "The request has more than {fields} header fields.",
}


def refusal(exc: BaseException, cfg: Any) -> Problem | None:
    """The problem to answer for a request gunicorn refused before the app saw it (None: a fault)."""
    if isinstance(exc, _FAULTS):
        return None
    for raised, status, slug, title, detail in _REFUSALS:
        if isinstance(exc, raised):
            template = detail
            if isinstance(exc, errors.LimitRequestHeaders):
                template = _HEADER_LIMIT_DETAILS.get(str(exc), detail)
            limits = {
                "line": cfg.limit_request_line,
                "fields": cfg.limit_request_fields,
                "field_size": cfg.limit_request_field_size,
            }
            return Problem(status, slug, title, template.format(**limits))
    return None


def render(problem: Problem) -> bytes:
    """The whole HTTP response for a problem, with the headers the app puts on its own responses."""
    body = json.dumps(problem.document()).encode()
    headers = {
        "Content-Type": PROBLEM_MIMETYPE,
        "Content-Length": str(len(body)),
        # As on gunicorn's own page: gunicorn closes the connection after it, since what follows a head
        # it could not read cannot be trusted to start the next request.
        "Connection": "close",
        **SECURITY_HEADERS,
        "Content-Security-Policy": API_CSP,
        "Cache-Control": "no-store",
    }
    # werkzeug's reason phrases, as on the app's own responses (Python's differ from one version to the next)
    head = f"HTTP/1.1 {problem.status} {HTTP_STATUS_CODES[problem.status]}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (head + "\r\n").encode("latin-1") + body


class ProblemWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's threaded worker, answering the requests it refuses itself in problem+json.

    gunicorn answers a request it cannot parse, or will not read (a request line or header past its
    limits), with an HTML page written by Worker.handle_error: every worker class calls that method with
    what went wrong before the app had the request, or what the app raised through it. Overriding it
    here, rather than replacing gunicorn's util.write_error for the whole process, keeps the change to
    this class and to one method whose call (req, client, addr, exc) gunicorn 27's workers share.
    """

    def handle_exit(self, sig: int, frame: Any) -> None:
        """Told to stop gracefully (SIGTERM): requests in flight get their graceful timeout to finish, and
        long-polls answer now with what is there, rather than holding the stop and then being cut off."""
        STOPPING.set()
        super().handle_exit(sig, frame)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        remote = (addr or ("", -1))[0]  # no address on a unix socket
        problem = refusal(exc, self.cfg)
        if problem is None:
            # Called from within gunicorn's `except`, so the stack is the exception's.
            self.log.exception("unhandled error", extra={"remote": remote})
            problem = from_http_exception(InternalServerError())
        else:
            # The reason is gunicorn's own words, with the offending input; clipped, as it can be long.
            reason = str(exc)[:200]
            self.log.warning(
                "request refused",
                extra={"status": problem.status, "problem": problem.slug, "reason": reason, "remote": remote},
            )
        try:
            # Without blocking, as gunicorn writes its page: a client that does not read cannot hold
            # the thread; the answer is far smaller than a socket's send buffer.
            util.write_nonblock(client, render(problem))
        except Exception:  # the client may be gone: nothing is left to tell it
            self.log.debug("could not send the refusal", extra={"remote": remote})


def serve(settings: Settings, *, host: str, port: int, workers: int, threads: int) -> None:
    _Gunicorn(
        settings,
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "worker_class": ProblemWorker,  # gunicorn's gthread, its own error pages in problem+json
            "threads": threads,
            "limit_request_line": LIMIT_REQUEST_LINE,
            "limit_request_fields": LIMIT_REQUEST_FIELDS,
            "limit_request_field_size": LIMIT_REQUEST_FIELD_SIZE,
            "timeout": 30,
            "graceful_timeout": API_GRACEFUL_TIMEOUT,
            "logconfig_dict": log_config(settings),
            "logger_class": AppLogsRequests,
            # Each worker builds its own app (and Redis connections) after the fork.
            "preload_app": False,
            # gunicorn 25+ opens a control socket at $HOME/.gunicorn/gunicorn.ctl, one path for every
            # `newsdesk api` of the user on the host; nothing here uses it.
            "control_socket_disable": True,
        },
    ).run()
