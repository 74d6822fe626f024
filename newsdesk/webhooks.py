"""Webhooks: a signed POST of an article's results to the `callback_url` given with it.

Signature: `X-Newsdesk-Signature: sha256=<hex>`, the HMAC-SHA256 of `<timestamp>.<body>` under
NEWSDESK_WEBHOOK_SECRET, where `<timestamp>` is the `X-Newsdesk-Timestamp` header (Unix seconds); a
receiver recomputes it and refuses old timestamps, so a captured request cannot be replayed later.
Delivery is at-least-once: a receiver may see one delivery more than once (same `X-Newsdesk-Delivery`).

SSRF guard: a callback may not reach private, loopback, link-local, multicast, reserved or otherwise
non-global addresses unless NEWSDESK_WEBHOOK_ALLOW_PRIVATE is on. A literal address is refused at
submission; a host name is resolved at delivery, every address it resolves to is checked, and the
request goes to the checked address (so a second DNS answer cannot point it elsewhere).

Time and size: NEWSDESK_WEBHOOK_TIMEOUT bounds a whole delivery (resolving, connecting, sending and the
answer's head), not each read; only the status line and headers of the answer are read.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpcore
import httpx
import idna

from newsdesk.results import article_view
from newsdesk.settings import Settings
from newsdesk.store import Article, Store

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Newsdesk-Signature"
TIMESTAMP_HEADER = "X-Newsdesk-Timestamp"
DELIVERY_HEADER = "X-Newsdesk-Delivery"
ATTEMPT_HEADER = "X-Newsdesk-Attempt"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookRefused(Exception):
    """The callback URL may not be called (scheme, or an address the SSRF guard refuses)."""


def blocked_reason(address: IPAddress) -> str | None:
    """Why a callback may not go to this address, or None if it may (a public, global unicast address)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return blocked_reason(address.ipv4_mapped)
    for reason, flag in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    ):
        if flag:
            return reason
    if not address.is_global:  # shared (100.64/10), documentation, benchmarking ranges and the like
        return "not globally routable"
    return None


@dataclass(frozen=True, slots=True)
class Target:
    """Where a callback URL points, in the form a request is made in."""

    scheme: str  # http or https
    host: str  # an address, or a name in ASCII (IDNA), as resolvers and the Host header take it
    port: int
    authority: str  # the Host header: the host, and the port when the URL names one
    path: str
    query: str


# A name's labels after IDNA: letters, digits, hyphens (and underscores, which some hosts use).
_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?")


def callback_target(url: str) -> Target:
    """Read a callback URL; WebhookRefused for one no request can be made to, whatever its address."""
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed "[" of an IPv6 address
        raise WebhookRefused("Not a URL.") from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise WebhookRefused("Use an http or https URL with a host.")
    if "@" in parts.netloc:
        # They would not be sent (deliveries carry a signature instead), and would show in every read of
        # the article: refused rather than dropped.
        raise WebhookRefused(
            "Credentials in the URL are not sent: verify the X-Newsdesk-Signature header instead."
        )
    try:
        named_port = parts.port  # ValueError: not a number, or above 65535
    except ValueError:
        named_port = 0
    if named_port == 0:
        raise WebhookRefused("The port must be a number from 1 to 65535.")
    host = parts.hostname  # lower case
    if literal_address(host) is None:
        # A name in the ASCII form a request uses. Beyond ASCII: IDNA 2008 with UTS 46 mapping, as
        # browsers, registries and httpx read it (Python's "idna" codec, IDNA 2003, makes "faß.de"
        # fass.de, another domain); the mapping also makes full-width letters, digits and dots ASCII.
        # Label by label: an ASCII label keeps its underscores ("my_hooks.bücher.de"), and the codec
        # then checks only the labels' lengths.
        try:
            if not host.isascii():
                labels = idna.uts46_remap(host, std3_rules=False, transitional=False).split(".")
                host = ".".join(label if label.isascii() else idna.alabel(label).decode() for label in labels)
            host.encode("idna")
        except UnicodeError:  # idna.IDNAError is one
            raise WebhookRefused("The host is not a valid domain name.") from None
        if not _NAME.fullmatch(host):
            raise WebhookRefused("The host is not a valid domain name.")
        # An address spelt as a name ("127.0.0.1.", or in full-width digits, which IDNA maps to ASCII
        # ones) is that address: resolvers do not read it so, and the SSRF guard must class it.
        if literal_address(host.removesuffix(".")) is not None:
            host = host.removesuffix(".")
    bracketed = f"[{host}]" if ":" in host else host
    return Target(
        scheme=parts.scheme,
        host=host,
        port=named_port or (443 if parts.scheme == "https" else 80),
        authority=bracketed if named_port is None else f"{bracketed}:{named_port}",
        path=parts.path or "/",
        query=parts.query,
    )


def check_callback_url(url: str, *, allow_private: bool) -> str | None:
    """At submission: why this URL is refused, or None. Host names are checked at delivery.

    The host is judged in the form a delivery would use (callback_target's): so "localhost.",
    "127.0.0.1." or a full-width "ｌｏｃａｌｈｏｓｔ" are the loopback names and addresses they stand for. A
    URL no request can be made to is refused whether or not private addresses are allowed.
    """
    try:
        target = callback_target(url)
    except WebhookRefused as refused:
        return str(refused)
    if allow_private:
        return None
    address = literal_address(target.host)
    if address is None:
        name = target.host.removesuffix(".")
        if name == "localhost" or name.endswith(".localhost"):
            return "Callbacks to loopback addresses are not allowed."
        return None
    reason = blocked_reason(address)
    return f"Callbacks to {reason} addresses are not allowed." if reason else None


# inet_aton's spellings of an IPv4 address: 1 to 4 parts, each decimal, octal (leading 0) or hex (0x).
_LEGACY_IPV4 = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}", re.IGNORECASE)


def literal_address(host: str) -> IPAddress | None:
    """The address a host names by itself, or None for a name to resolve.

    Besides the standard forms this reads the ones resolvers still accept ("2130706433", "0x7f000001",
    "127.1", "0177.0.0.1": all 127.0.0.1), so they cannot slip past the submission check.
    """
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _LEGACY_IPV4.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def resolve_checked(host: str, port: int, *, allow_private: bool, within: float | None = None) -> str:
    """Resolve a host and check every address it has; returns the address to connect to.

    `within` seconds at most (TimeoutError after): the resolver's own timeouts and retries can take
    longer than a whole delivery may.
    """
    try:
        infos = _getaddrinfo(host, port, within)
    except socket.gaierror as error:
        raise OSError(f"cannot resolve {host}: {error}") from error
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not addresses:
        raise OSError(f"{host} has no address")
    if not allow_private:
        for address in addresses:
            reason = blocked_reason(address)
            if reason:
                raise WebhookRefused(f"{host} resolves to a {reason} address ({address})")
    return str(addresses[0])


_AddrInfo = list[tuple[Any, Any, int, str, Any]]


def _getaddrinfo(host: str, port: int, within: float | None) -> _AddrInfo:
    """socket.getaddrinfo, given up after `within` seconds. getaddrinfo takes no timeout, so it runs in a
    daemon thread that is left to finish on its own if it is late."""
    if within is None:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    answer: list[_AddrInfo | BaseException] = []

    def resolve() -> None:
        try:
            answer.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except BaseException as error:  # handed to the caller's thread
            answer.append(error)

    thread = threading.Thread(target=resolve, name="webhook-resolve", daemon=True)
    thread.start()
    thread.join(max(0.0, within))
    if not answer:
        raise TimeoutError(f"resolving {host} took longer than the delivery's timeout")
    if isinstance(answer[0], BaseException):
        raise answer[0]
    return answer[0]


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value for a body sent at `timestamp`."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, tolerance: float = 300) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent."""
    try:
        fresh = abs(time.time() - int(timestamp)) <= tolerance
    except ValueError:
        return False
    # As bytes: compare_digest refuses str with non-ASCII characters, which a forged header may carry.
    expected = sign(secret, timestamp, body).encode()
    return fresh and hmac.compare_digest(expected, signature.encode("utf-8", "replace"))


def backoff(attempt: int, base: float, cap: float) -> float:
    """Seconds before retry `attempt` (1 for the first retry): doubling from `base`, at most `cap`."""
    return float(min(cap, base * 2 ** (attempt - 1)))


@dataclass(frozen=True, slots=True)
class Delivery:
    url: str
    payload: dict[str, Any]
    delivery_id: str
    attempt: int


# What a delivery that may work when tried again raises: httpcore's faults (they share no base class)
# and the operating system's (a host that does not resolve, a refused connection).
TRANSIENT_FAULTS: tuple[type[Exception], ...] = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    OSError,
)


def post(delivery: Delivery, *, secret: str, allow_private: bool, timeout: float) -> int:
    """POST a delivery, signed; returns the status code. All of it, from resolving the host to the
    answer's headers, takes at most `timeout` seconds; the answer's body is not read.

    Raises WebhookRefused, httpx.InvalidURL, or one of TRANSIENT_FAULTS.
    """
    deadline = time.monotonic() + timeout
    target = callback_target(delivery.url)
    address = resolve_checked(
        target.host, target.port, allow_private=allow_private, within=deadline - time.monotonic()
    )
    netloc = f"[{address}]" if ":" in address else address
    # httpx reads and percent-encodes the URL as it always did for these requests; httpcore sends them.
    pinned = httpx.URL(urlunsplit((target.scheme, f"{netloc}:{target.port}", target.path, target.query, "")))
    body = json.dumps(delivery.payload, ensure_ascii=False).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        "Host": target.authority,
        "User-Agent": "newsdesk-webhook/1",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
        DELIVERY_HEADER: delivery.delivery_id,
        ATTEMPT_HEADER: str(delivery.attempt),
    }
    # The connection goes to the address just checked; TLS still verifies the certificate for the host.
    extensions: dict[str, Any] = {"timeout": dict.fromkeys(("connect", "read", "write", "pool"), timeout)}
    if target.scheme == "https":
        extensions["sni_hostname"] = target.host.removesuffix(".")  # SNI names carry no final dot
    network = _DeadlineBackend(deadline)
    try:
        # httpcore, not httpx, because only it lets the network backend be chosen (a public interface):
        # it is how every socket operation of the request gets the time left, not a timeout of its own.
        with (
            httpcore.ConnectionPool(
                ssl_context=httpx.create_ssl_context(), network_backend=network, retries=0
            ) as pool,
            pool.stream(
                "POST",
                httpcore.URL(
                    scheme=pinned.raw_scheme, host=pinned.raw_host, port=pinned.port, target=pinned.raw_path
                ),
                headers=list(headers.items()),
                content=body,
                extensions=extensions,
            ) as response,
        ):
            # The status is all a delivery needs: leaving the block closes the connection with the body
            # unread (at most what came in with the head), however large the receiver made it.
            return response.status
    finally:
        network.close()


_T = TypeVar("_T")
_TIME_UP = "the webhook's timeout (NEWSDESK_WEBHOOK_TIMEOUT) ran out"


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's socket backend held to one deadline for a whole request.

    httpcore's timeouts bound each socket operation (connecting, one read, one write) on its own, so a
    receiver that sends a byte just inside each read timeout could hold a delivery for as long as it
    liked. Here every operation gets at most the time left; and since one operation may make many
    system calls (a send of a large buffer, a TLS handshake), each of which a slow peer can feed just in
    time, a watchdog also shuts the connection down at the deadline, which ends any of them at once.
    """

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self._sync = httpcore.SyncBackend()
        self._watchdogs: list[_Watchdog] = []

    def left(self, timeout: float | None, expired: type[Exception]) -> float:
        """Seconds the next operation may take: its own timeout, or less when the deadline is nearer."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise expired(_TIME_UP)
        return remaining if timeout is None else min(timeout, remaining)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._sync.connect_tcp(
            host,
            port,
            timeout=self.left(timeout, httpcore.ConnectTimeout),
            local_address=local_address,
            socket_options=socket_options,
        )
        watchdog = _Watchdog(stream.get_extra_info("socket"), self.deadline - time.monotonic())
        self._watchdogs.append(watchdog)
        return _DeadlineStream(stream, self, watchdog)

    def close(self) -> None:
        for watchdog in self._watchdogs:
            watchdog.close()


class _Watchdog:
    """Shuts a connection down (both ways) after `seconds`: a blocked send, receive or handshake on it
    returns at once."""

    def __init__(self, sock: socket.socket, seconds: float) -> None:
        # A descriptor of our own for the same connection: TLS replaces (and detaches) the socket object
        # httpcore holds, and ours cannot be closed, and its number reused, under the timer.
        self._sock = sock.dup()
        self._lock = threading.Lock()
        self.fired = False
        self._timer = threading.Timer(max(0.0, seconds), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self._sock.fileno() == -1:  # closed: the delivery is over
                return
            self.fired = True
            with contextlib.suppress(OSError):  # the peer has already gone
                self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._sock.close()


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(
        self, stream: httpcore.NetworkStream, backend: _DeadlineBackend, watchdog: _Watchdog
    ) -> None:
        self._stream = stream
        self._backend = backend
        self._watchdog = watchdog

    def _within(
        self, operation: Callable[[float], _T], timeout: float | None, expired: type[Exception]
    ) -> _T:
        """Run an operation with the time it may take; once the watchdog has ended the connection, what
        the operation met (a reset, an end of stream) is reported as the timeout it is."""
        try:
            result = operation(self._backend.left(timeout, expired))
        except Exception as error:
            if self._watchdog.fired:
                raise expired(_TIME_UP) from error
            raise
        if self._watchdog.fired:
            raise expired(_TIME_UP)
        return result

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._within(lambda left: self._stream.read(max_bytes, left), timeout, httpcore.ReadTimeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._within(lambda left: self._stream.write(buffer, left), timeout, httpcore.WriteTimeout)

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        tls = self._within(
            lambda left: self._stream.start_tls(ssl_context, server_hostname, left),
            timeout,
            httpcore.ConnectTimeout,
        )
        return _DeadlineStream(tls, self._backend, self._watchdog)

    def close(self) -> None:
        self._stream.close()

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


# A webhook's states after which nothing more is sent.
SETTLED = frozenset({"delivered", "failed", "refused"})


@dataclass(frozen=True, slots=True)
class Outcome:
    # delivered, retry, failed, refused, gone (the article no longer exists), unsigned (not sent, no
    # attempt counted: this worker has no secret to sign with); or queued, when another delivery of the
    # same webhook overtook this one (its outcome stands)
    state: str
    detail: str = ""
    attempt: int = 0  # the attempt's number (for a settled webhook, the attempts it had)

    @property
    def retry(self) -> bool:
        return self.state == "retry"


def deliver_article(
    store: Store,
    settings: Settings,
    article_id: str,
    *,
    interruptions: tuple[type[BaseException], ...] = (),
) -> Outcome:
    """One delivery attempt of a finished article's webhook; the outcome is recorded on the article.

    A 2xx answer is a delivery. Anything else (another status, a timeout, a connection error, an
    `interruption`: the task's time limit) is retried until NEWSDESK_WEBHOOK_MAX_ATTEMPTS; an address the
    SSRF guard refuses, or a URL no request can be made to, is not retried. The attempt's number is
    counted on the article as it begins, so neither a delivery sent again by the sweeper nor one whose
    worker died mid-request starts the count over. A webhook that has settled is not sent again.
    """
    article = store.get_article(article_id)
    if article is None or not article.callback_url:
        return Outcome("gone")
    if (unattempted := _no_attempt(article, settings)) is not None:
        return unattempted
    started = store.start_webhook(article_id)
    if started is None:
        return Outcome("gone")
    state, attempt = started
    if state not in {"due", "queued"}:  # a message sent again after it settled (at-least-once)
        return Outcome(state, "already settled", attempt)
    if attempt > settings.webhook_max_attempts:
        # The last attempt allowed began and never recorded its outcome: its worker died or was killed.
        detail = f"no attempt left after {attempt - 1} (NEWSDESK_WEBHOOK_MAX_ATTEMPTS)"
        store.record_webhook(article_id, "failed", attempt - 1, detail, attempt=attempt)
        return Outcome("failed", detail, attempt - 1)
    delivery = Delivery(article.callback_url, article_view(article), article_id, attempt)
    try:
        status = post(
            delivery,
            secret=settings.webhook_secret,
            allow_private=settings.webhook_allow_private,
            timeout=settings.webhook_timeout,
        )
    except WebhookRefused as refused:
        outcome = Outcome("refused", str(refused))
    except httpx.InvalidURL as error:  # stored before the API checked for it; no retry will mend it
        outcome = Outcome("refused", f"Not a usable URL: {error}"[:300])
    except TRANSIENT_FAULTS as error:
        outcome = Outcome("retry", f"{type(error).__name__}: {error}"[:300])
    except interruptions as error:
        outcome = Outcome("retry", f"the task's time limit ran out ({type(error).__name__})")
    except Exception as error:
        # Unforeseen, so logged with its trace; it still counts as a failed attempt, so that the webhook
        # settles at the attempt limit instead of failing its task (and being sent again) without end.
        log.exception("webhook delivery failed", extra={"article_id": article_id, "webhook_attempt": attempt})
        outcome = Outcome("retry", f"{type(error).__name__}: {error}"[:300])
    else:
        outcome = Outcome("delivered") if 200 <= status < 300 else Outcome("retry", f"HTTP {status}")
    return _recorded(store, settings, article_id, attempt, outcome)


def _no_attempt(article: Article, settings: Settings) -> Outcome | None:
    """Why a delivery to an article that has a webhook begins no attempt (none is counted), or None."""
    if article.webhook in SETTLED:  # a message sent again after it settled (at-least-once)
        return Outcome(article.webhook, "already settled")
    if not settings.webhook_secret:
        # The API takes no callback without a secret, but this worker may lack it (its settings are read
        # at start, so one not restarted since the secret was set): a signature under an empty key is one
        # anybody can forge. Nothing is sent and no attempt counted, so the webhook waits for a worker
        # that has it instead of using its attempts up here.
        return Outcome("unsigned", "NEWSDESK_WEBHOOK_SECRET is not set on this worker; nothing sent unsigned")
    return None


def _recorded(store: Store, settings: Settings, article_id: str, attempt: int, outcome: Outcome) -> Outcome:
    """Record an attempt's outcome on the article; a retry past the attempt limit ends `failed`."""
    if outcome.retry and attempt >= settings.webhook_max_attempts:
        outcome = Outcome("failed", outcome.detail)
    recorded_state = "queued" if outcome.retry else outcome.state
    if not store.record_webhook(article_id, recorded_state, attempt, outcome.detail):
        # Not news: another delivery of it (a message sent twice) began later or settled it, and that
        # one's outcome stands; this message is done. Or the article is gone.
        now = store.webhook_state(article_id)
        return Outcome(now or "gone", f"{outcome.detail} (overtaken by another delivery)".lstrip(), attempt)
    return Outcome(outcome.state, outcome.detail, attempt)
