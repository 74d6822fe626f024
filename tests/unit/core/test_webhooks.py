"""Webhooks: the SSRF guard's address classes, the signature, the backoff, and real deliveries to a
receiver on loopback (allowed by configuration), with outcomes recorded on the article."""

from __future__ import annotations

import contextlib
import http.server
import ipaddress
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import httpcore
import pytest

from newsdesk import webhooks
from newsdesk.settings import Settings
from newsdesk.store import ANALYSES, NewArticle, Store

SECRET = "s3cret"


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not globally routable"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:8.8.8.8", None),
    ],
)
def test_address_classes(address: str, reason: str | None) -> None:
    assert webhooks.blocked_reason(ipaddress.ip_address(address)) == reason


def test_callback_url_check_at_submission() -> None:
    check = webhooks.check_callback_url
    assert check("https://hooks.example.com/x", allow_private=False) is None
    assert check("http://127.0.0.1:8000/x", allow_private=False) == (
        "Callbacks to loopback addresses are not allowed."
    )
    assert check("http://localhost/x", allow_private=False) is not None
    assert check("http://127.0.0.1:8000/x", allow_private=True) is None
    assert check("ftp://example.com/x", allow_private=True) is not None


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("2130706433", "loopback"),  # 127.0.0.1 as one decimal number
        ("0x7f000001", "loopback"),
        ("0x7F.1", "loopback"),
        ("127.1", "loopback"),
        ("0177.0.0.1", "loopback"),  # octal
        ("0", "unspecified"),
        ("167772161", "private"),  # 10.0.0.1
    ],
)
def test_other_spellings_of_an_address_are_checked_at_submission(host: str, reason: str) -> None:
    assert webhooks.check_callback_url(f"http://{host}/x", allow_private=False) == (
        f"Callbacks to {reason} addresses are not allowed."
    )


@pytest.mark.parametrize("host", ["hooks.example.com", "123.example.com", "0x7f.example.com", "1.2.3.4.5"])
def test_names_are_left_to_delivery(host: str) -> None:
    assert webhooks.literal_address(host) is None


def test_signature_round_trip_and_replay_window() -> None:
    body = b'{"id": "a"}'
    now = str(int(time.time()))
    signature = webhooks.sign(SECRET, now, body)
    assert signature.startswith("sha256=")
    assert webhooks.verify(SECRET, now, body, signature)
    assert not webhooks.verify("other", now, body, signature)
    assert not webhooks.verify(SECRET, now, body + b" ", signature)
    old = str(int(time.time()) - 600)
    assert not webhooks.verify(SECRET, old, body, webhooks.sign(SECRET, old, body))  # a replay
    assert not webhooks.verify(SECRET, "soon", body, signature)
    assert not webhooks.verify(SECRET, now, body, "sha256=é")  # a forged header: False, not an error


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [webhooks.backoff(n, 2, 20) for n in range(1, 6)] == [2, 4, 8, 16, 20]


class Receiver:
    """A real HTTP server on loopback that records deliveries and fails the first `fail_first`."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers.items()), body))
                failing = len(receiver.requests) <= receiver.fail_first
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?x=1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(fail_first=1)
    yield server
    server.close()


def finished_article(store: Store, url: str) -> str:
    article_id = store.create_article(NewArticle(text="Some words here.", callback_url=url)).article_id
    for name in ANALYSES:
        store.finish_analysis(article_id, name, result={"n": 1}, version="v1")
    return article_id


def test_delivery_is_signed_retried_and_recorded(receiver: Receiver) -> None:
    store = Store(fakeredis.FakeRedis(), "unit")
    settings = Settings.from_env(
        {}, webhook_secret=SECRET, webhook_allow_private=True, webhook_max_attempts=2
    )
    article_id = finished_article(store, receiver.url)
    assert store.webhook_state(article_id) == "due"  # marked by the finish step

    first = webhooks.deliver_article(store, settings, article_id)
    assert first.state == "retry"
    assert first.detail == "HTTP 500"
    second = webhooks.deliver_article(store, settings, article_id)
    assert second.state == "delivered"
    assert store.webhook_state(article_id) == "delivered"

    headers, body = receiver.requests[-1]
    assert webhooks.verify(SECRET, headers["X-Newsdesk-Timestamp"], body, headers["X-Newsdesk-Signature"])
    assert headers["X-Newsdesk-Delivery"] == article_id
    assert headers["X-Newsdesk-Attempt"] == "2"
    assert headers["Host"] == receiver.url.split("/")[2]
    payload = json.loads(body)
    assert payload["id"] == article_id
    assert payload["status"] == "done"
    assert payload["summary"] == {
        "status": "done",
        "n": 1,
        "version": "v1",
        "finished_at": payload["summary"]["finished_at"],
    }
    assert [h["X-Newsdesk-Delivery"] for h, _ in receiver.requests] == [article_id, article_id]


def test_attempts_run_out(receiver: Receiver) -> None:
    receiver.fail_first = 10
    store = Store(fakeredis.FakeRedis(), "unit")
    settings = Settings.from_env(
        {}, webhook_secret=SECRET, webhook_allow_private=True, webhook_max_attempts=1
    )
    article_id = finished_article(store, receiver.url)
    assert webhooks.deliver_article(store, settings, article_id).state == "failed"
    assert store.webhook_state(article_id) == "failed"


def test_a_worker_without_the_secret_sends_nothing_and_uses_no_attempt(receiver: Receiver) -> None:
    receiver.fail_first = 0
    store = Store(fakeredis.FakeRedis(), "unit")
    settings = Settings.from_env({}, webhook_allow_private=True, webhook_max_attempts=2)
    article_id = finished_article(store, receiver.url)  # accepted when the API had a secret
    assert store.move_webhook(article_id, "due", "queued")
    for _ in range(3):  # more tries than attempts allowed
        outcome = webhooks.deliver_article(store, settings, article_id)
        assert outcome.state == "unsigned"
        assert "NEWSDESK_WEBHOOK_SECRET" in outcome.detail
    assert receiver.requests == []  # never signed with an empty key
    assert store.webhook_state(article_id) == "queued"
    signing = Settings.from_env({}, webhook_secret=SECRET, webhook_allow_private=True, webhook_max_attempts=2)
    assert webhooks.deliver_article(store, signing, article_id).state == "delivered"  # a worker that has it
    assert [h["X-Newsdesk-Attempt"] for h, _ in receiver.requests] == ["1"]


def test_a_worker_without_the_secret_ends_a_message_for_a_settled_webhook(receiver: Receiver) -> None:
    receiver.fail_first = 0
    store = Store(fakeredis.FakeRedis(), "unit")
    signing = Settings.from_env({}, webhook_secret=SECRET, webhook_allow_private=True)
    article_id = finished_article(store, receiver.url)
    assert webhooks.deliver_article(store, signing, article_id).state == "delivered"
    unsigned = Settings.from_env({}, webhook_allow_private=True)
    again = webhooks.deliver_article(store, unsigned, article_id)  # a message sent twice
    assert (again.state, again.detail) == ("delivered", "already settled")  # not retried for ever
    assert len(receiver.requests) == 1


def test_overlapping_deliveries_keep_the_delivery() -> None:
    # Two messages for one webhook (at-least-once): the first to begin is answered last, with an error.
    answered = threading.Event()
    attempts: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            attempts.append(self.headers["X-Newsdesk-Attempt"])
            if self.headers["X-Newsdesk-Attempt"] == "1":
                answered.wait(10)
                self.send_response(409)  # a receiver that dedupes on X-Newsdesk-Delivery
            else:
                self.send_response(204)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        store = Store(fakeredis.FakeRedis(), "unit")
        settings = Settings.from_env(
            {}, webhook_secret=SECRET, webhook_allow_private=True, webhook_max_attempts=2
        )
        article_id = finished_article(store, f"http://127.0.0.1:{server.server_address[1]}/hook")
        outcomes: list[webhooks.Outcome] = []
        first = threading.Thread(
            target=lambda: outcomes.append(webhooks.deliver_article(store, settings, article_id))
        )
        first.start()
        while not attempts:
            time.sleep(0.01)
        assert webhooks.deliver_article(store, settings, article_id).state == "delivered"
        answered.set()
        first.join(10)
        assert [(o.state, o.attempt) for o in outcomes] == [("delivered", 1)]  # not retried: settled
        assert outcomes[0].detail == "HTTP 409 (overtaken by another delivery)"
        assert store.webhook_state(article_id) == "delivered"
        assert webhooks.deliver_article(store, settings, article_id).detail == "already settled"
        assert attempts == ["1", "2"]
    finally:
        server.shutdown()
        server.server_close()


def test_loopback_refused_at_delivery_unless_allowed(receiver: Receiver) -> None:
    store = Store(fakeredis.FakeRedis(), "unit")
    settings = Settings.from_env({}, webhook_secret=SECRET)
    # A host name, so submission could not tell; delivery resolves it and refuses.
    url = receiver.url.replace("127.0.0.1", "localhost")
    article_id = finished_article(store, url)
    outcome = webhooks.deliver_article(store, settings, article_id)
    assert outcome.state == "refused"
    assert "loopback" in outcome.detail
    assert receiver.requests == []
    assert store.webhook_state(article_id) == "refused"


def test_an_unusable_url_is_refused_not_retried(receiver: Receiver) -> None:
    # The API refuses such a URL now; one stored before it did must not be retried for ever.
    store = Store(fakeredis.FakeRedis(), "unit")
    settings = Settings.from_env({}, webhook_secret=SECRET, webhook_allow_private=True)
    article_id = finished_article(store, receiver.url + "/\x00")
    outcome = webhooks.deliver_article(store, settings, article_id)
    assert outcome.state == "refused"
    assert "Not a usable URL" in outcome.detail
    assert store.webhook_state(article_id) == "refused"
    assert receiver.requests == []


def test_deleted_article_is_not_delivered(receiver: Receiver) -> None:
    store = Store(fakeredis.FakeRedis(), "unit")
    settings = Settings.from_env({}, webhook_secret=SECRET, webhook_allow_private=True)
    article_id = finished_article(store, receiver.url)
    store.delete_article(article_id, "")
    assert webhooks.deliver_article(store, settings, article_id).state == "gone"
    assert receiver.requests == []


def test_an_outcome_is_not_written_to_a_deleted_article() -> None:
    client = fakeredis.FakeRedis()
    store = Store(client, "unit")
    article_id = finished_article(store, "https://hooks.example.com/in")
    store.delete_article(article_id, "")
    store.record_webhook(article_id, "delivered", 1)
    assert client.keys("unit:article:*") == []


class RawReceiver:
    """A TCP listener on loopback that hands each connection to `serve` (in a thread): for receivers that
    misbehave at the byte level, which an HTTP server library would not let a test do."""

    def __init__(self, serve: Callable[[socket.socket], None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"
        self.serve = serve
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # the listener closed
            while True:
                conn, _ = self.listener.accept()
                threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            self.serve(conn)

    def close(self) -> None:
        self.listener.close()


def read_request(conn: socket.socket) -> None:
    """Read one request's head (its small JSON body may come with it or after; it is not needed)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk


def a_delivery(url: str) -> webhooks.Delivery:
    return webhooks.Delivery(url, {"id": "a"}, "a", 1)


def test_the_timeout_bounds_the_whole_delivery_not_each_read() -> None:
    # Each byte of the answer comes well inside the timeout, but the whole answer takes 6.75 s.
    answer = b"HTTP/1.1 204 No Content\r\n\r\n"

    def drip(conn: socket.socket) -> None:
        read_request(conn)
        for byte in answer:
            conn.sendall(bytes([byte]))
            time.sleep(0.25)

    receiver = RawReceiver(drip)
    try:
        started = time.monotonic()
        with pytest.raises(httpcore.TimeoutException):
            webhooks.post(a_delivery(receiver.url), secret=SECRET, allow_private=True, timeout=1.0)
        assert time.monotonic() - started < 1.6
    finally:
        receiver.close()


def test_a_slow_receiver_is_a_failed_attempt_within_the_timeout() -> None:
    def drip(conn: socket.socket) -> None:
        read_request(conn)
        for byte in b"HTTP/1.1 204 No Content\r\n\r\n":
            conn.sendall(bytes([byte]))
            time.sleep(0.2)

    receiver = RawReceiver(drip)
    try:
        store = Store(fakeredis.FakeRedis(), "unit")
        settings = Settings.from_env(
            {}, webhook_secret=SECRET, webhook_allow_private=True, webhook_timeout=0.5
        )
        article_id = finished_article(store, receiver.url)
        started = time.monotonic()
        outcome = webhooks.deliver_article(store, settings, article_id)
        assert time.monotonic() - started < 1.2
        assert outcome.state == "retry"
        assert "Timeout" in outcome.detail
        assert store.webhook_state(article_id) == "queued"
    finally:
        receiver.close()


def test_the_response_body_is_not_read() -> None:
    # A receiver that answers 200 with 256 MB: only the status matters, so the client stops reading after
    # the head and closes. What the receiver got out is then at most what the socket buffers held.
    size = 256 * 2**20
    sent: list[int] = []

    def flood(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
        chunk = bytes(2**16)
        total = 0
        try:
            while total < size:
                conn.sendall(chunk)
                total += len(chunk)
        finally:
            sent.append(total)

    receiver = RawReceiver(flood)
    try:
        status = webhooks.post(a_delivery(receiver.url), secret=SECRET, allow_private=True, timeout=5.0)
        assert status == 200
        deadline = time.monotonic() + 5
        while not sent and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sent
        assert sent[0] < 32 * 2**20
    finally:
        receiver.close()


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com:99999/in",  # the port is out of range (urlsplit's port raises ValueError)
        "http://example.com:0/in",
        f"http://{'é' * 60}.com/in",  # a label IDNA cannot encode in 63 characters (UnicodeError)
        f"http://{'a' * 64}.com/in",
        "http://exa..mple.com/in",  # an empty label
    ],
)
@pytest.mark.parametrize("allow_private", [False, True])
def test_a_url_no_request_can_be_made_to_is_refused_at_delivery(url: str, allow_private: bool) -> None:
    # Such URLs were accepted before the API checked for them; they must settle, not fail the task.
    store = Store(fakeredis.FakeRedis(), "unit")
    settings = Settings.from_env({}, webhook_secret=SECRET, webhook_allow_private=allow_private)
    article_id = finished_article(store, url)
    outcome = webhooks.deliver_article(store, settings, article_id)
    assert outcome.state == "refused"
    assert store.webhook_state(article_id) == "refused"


def test_a_host_name_is_sent_in_its_ascii_form() -> None:
    target = webhooks.callback_target("https://Bücher.example:8443/in?x=1")
    assert target.host == "xn--bcher-kva.example"
    # IDNA 2008, as browsers and registries read names; IDNA 2003 would make these fass.de and σ.gr.
    assert webhooks.callback_target("https://faß.de/in").host == "xn--fa-hia.de"
    assert webhooks.callback_target("https://ς.gr/in").host == "xn--3xa.gr"
    assert webhooks.callback_target("https://my_hooks.example.com/in").host == "my_hooks.example.com"
    assert webhooks.callback_target("https://my_hooks.bücher.de/in").host == "my_hooks.xn--bcher-kva.de"
    assert target.authority == "xn--bcher-kva.example:8443"
    assert (target.port, target.path, target.query) == (8443, "/in", "x=1")
    assert webhooks.callback_target("http://[::1]/").authority == "[::1]"
    assert webhooks.callback_target("https://hooks.example.com/").port == 443


def test_the_attempt_is_counted_in_the_store(receiver: Receiver) -> None:
    receiver.fail_first = 10
    store = Store(fakeredis.FakeRedis(), "unit")
    settings = Settings.from_env(
        {}, webhook_secret=SECRET, webhook_allow_private=True, webhook_max_attempts=3
    )
    article_id = finished_article(store, receiver.url)
    outcomes = [webhooks.deliver_article(store, settings, article_id) for _ in range(3)]
    assert [(o.state, o.attempt) for o in outcomes] == [("retry", 1), ("retry", 2), ("failed", 3)]
    assert [h["X-Newsdesk-Attempt"] for h, _ in receiver.requests] == ["1", "2", "3"]
    # A message sent again after the webhook settled (delivery is at-least-once) sends nothing more.
    assert webhooks.deliver_article(store, settings, article_id).state == "failed"
    assert len(receiver.requests) == 3


def test_an_attempt_whose_outcome_was_never_recorded_still_counts(receiver: Receiver) -> None:
    store = Store(fakeredis.FakeRedis(), "unit")
    settings = Settings.from_env(
        {}, webhook_secret=SECRET, webhook_allow_private=True, webhook_max_attempts=2
    )
    article_id = finished_article(store, receiver.url)
    assert store.move_webhook(article_id, "due", "queued")
    # Two attempts started and their worker died mid-request (or was killed at the hard time limit) each
    # time: nothing was recorded, and the sweeper sent the delivery again.
    for _ in range(2):
        store.start_webhook(article_id)
    outcome = webhooks.deliver_article(store, settings, article_id)
    assert outcome.state == "failed"
    assert store.webhook_state(article_id) == "failed"
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("localhost.", "loopback"),  # the same name, fully qualified
        ("api.localhost.", "loopback"),
        ("127.0.0.1.", "loopback"),
        ("2130706433.", "loopback"),
        ("ｌｏｃａｌｈｏｓｔ", "loopback"),  # full-width: IDNA maps it to "localhost", as the resolver would
        ("１２７.０.０.１", "loopback"),
        ("10。0。0。1", "private"),  # ideographic full stops separate labels in IDNA
    ],
)
def test_more_spellings_of_a_refused_host_are_refused_at_submission(host: str, reason: str) -> None:
    url = f"http://{host}:8000/x"
    assert (
        webhooks.check_callback_url(url, allow_private=False)
        == f"Callbacks to {reason} addresses are not allowed."
    )
    assert webhooks.check_callback_url(url, allow_private=True) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com:99999/in",
        "http://example.com:0/in",
        "http://example.com:http/in",
        f"http://{'é' * 60}.com/in",
        "http://exa..mple.com/in",
        "http://exa!mple.com/in",
        "http://[::1/in",  # urlsplit raises ValueError
        "http://ex\u200dample.com/in",  # a joiner IDNA 2008 does not allow there
        "https://user:pass@hooks.example.com/in",  # credentials would not be sent
        "https://hooks.example.com@example.org/in",
    ],
)
@pytest.mark.parametrize("allow_private", [False, True])
def test_a_url_no_request_can_be_made_to_is_refused_at_submission(url: str, allow_private: bool) -> None:
    # Not an address rule: NEWSDESK_WEBHOOK_ALLOW_PRIVATE does not lift it.
    assert webhooks.check_callback_url(url, allow_private=allow_private) is not None


def test_an_address_spelt_as_a_name_is_called_as_the_address() -> None:
    # Resolvers do not read "127.0.0.1." as an address; with private addresses allowed, the call goes there.
    assert webhooks.callback_target("http://127.0.0.1.:8000/x").host == "127.0.0.1"
    assert webhooks.callback_target("http://１２７.０.０.１/x").host == "127.0.0.1"
    assert webhooks.callback_target("http://hooks.example.com./x").host == "hooks.example.com."
