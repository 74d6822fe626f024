"""`newsdesk run`: the whole service on one machine (Redis, API, worker) as supervised child processes."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx
import redis

from newsdesk.embedded import EmbeddedRedis, NoEmbeddedRedis, redis_server_binary
from newsdesk.parent_death import dies_with_parent
from newsdesk.seeds import add_seeds, read_seeds
from newsdesk.settings import API_GRACEFUL_TIMEOUT, Settings
from newsdesk.store import Store

log = logging.getLogger(__name__)


# While `newsdesk run` runs its embedded Redis, the server's URL is in this file of its data folder, so
# that `newsdesk seeds` run beside it (with no REDIS_URL) reaches the same Redis: its port is a free one.
URL_FILE = "redis.url"
# Held (flock) by the `newsdesk run` using a data folder for as long as it runs, so that a second one
# cannot start a second redis-server on the same append-only files. It holds that run's pid, for the
# message; the file is left in place (removing it would let a third run lock a new file beside it).
LOCK_FILE = "run.lock"
# Each stops the service in order: Ctrl-C, `kill`, and the hang-up of a closed terminal or lost SSH
# session, which would otherwise end us at once and leave the children (in their own sessions) running.
# One of them while the service is stopping stops it at once (Stop).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Seconds a child is given after its quick stop, before it and the processes it started are killed.
QUICK_STOP_TIMEOUT = 10.0
# Said on stderr at the first stop signal and at the second (Stop).
FIRST_STOP_NOTICE = (
    "newsdesk: stopping (the worker first finishes its running analyses); press Ctrl-C again to stop at once"
)
QUICK_STOP_NOTICE = (
    "newsdesk: stopping at once: running requests and analyses are cut off "
    "(the analyses go back to their queue)"
)


class CannotStart(Exception):
    """`newsdesk run` cannot start: its data folder or its port is taken, or the embedded Redis is not
    installed; the message says which."""


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[int]:
    """Hold the data folder for the block's duration, or raise CannotStart at once if another holds it.
    Yields the lock's descriptor: every child is given it, so that the lock lasts as long as the last of
    them (a `newsdesk run` killed with SIGKILL leaves its Redis, API and worker stopping, and the folder
    is not free before they have: the worker may still be finishing its analyses).
    """
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        lock = (data_dir / LOCK_FILE).open("a+", encoding="utf-8")
    except OSError as error:
        raise CannotStart(f"{data_dir} cannot be the data folder: {error.strerror or error}") from error
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            raise CannotStart(
                f"{data_dir} is in use by another `newsdesk run` or the processes it started (pid {holder} "
                "started them); stop those first, or give this one another --data-dir"
            ) from None
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        yield lock.fileno()


@dataclass(frozen=True)
class LocalRedis:
    url: str
    server: subprocess.Popen[bytes] | None  # the embedded server, watched like the other children
    # For the API and the worker to hold: the data folder's lock, and the embedded server's lifeline.
    pass_fds: tuple[int, ...]


@contextlib.contextmanager
def _pipe() -> Iterator[tuple[int, int]]:
    """A pipe (read end, write end) for the block's duration; the descriptors are not inherited unless
    passed (pass_fds)."""
    read_end, write_end = os.pipe()
    try:
        yield read_end, write_end
    finally:
        os.close(read_end)
        os.close(write_end)


@contextlib.contextmanager
def redis_for(settings: Settings, data_dir: Path, explicit_url: bool) -> Iterator[LocalRedis]:
    """The Redis to use: the configured one, or an embedded server for the block's duration."""
    if explicit_url:
        yield LocalRedis(settings.redis_url, None, ())
        return
    try:
        redis_server_binary()  # before the data folder is taken: a missing package is one line
    except NoEmbeddedRedis as error:
        raise CannotStart(str(error)) from error
    # Should we be killed (SIGKILL), the API and the worker get SIGTERM from the kernel and stop as they
    # would on ours; the worker still saves its running analyses into Redis. So Redis outlives them: it
    # is stopped only once the last process holding the lifeline's write end (we, the API, the worker and
    # their own processes) has exited, or when the worker's time limit must have ended them.
    with (
        data_dir_lock(data_dir) as lock,
        _pipe() as (lifeline, held),
        EmbeddedRedis(
            data_dir / "redis",
            pass_fds=(lock,),
            clients_lifeline=lifeline,
            clients_timeout=max(settings.task_time_limit, API_GRACEFUL_TIMEOUT) + 15,
        ) as server,
    ):
        log.info("embedded redis started", extra={"url": server.url, "data_dir": str(data_dir / "redis")})
        url_file = data_dir / URL_FILE
        url_file.write_text(server.url + "\n", encoding="utf-8")
        try:
            yield LocalRedis(server.url, server.process, (lock, held))
        finally:
            url_file.unlink(missing_ok=True)


def running_embedded_url(data_dir: Path) -> str | None:
    """The URL of the embedded Redis a `newsdesk run` with this data folder is running, if one is."""
    url_file = data_dir / URL_FILE
    if not url_file.is_file():
        return None
    url = url_file.read_text(encoding="utf-8").strip()
    with (
        contextlib.suppress(redis.RedisError),
        redis.Redis.from_url(url, socket_connect_timeout=0.5) as client,
    ):
        if client.ping():
            return url
    return None  # left behind by a run that was killed


def _spawn(arguments: list[str], env: dict[str, str], pass_fds: tuple[int, ...]) -> subprocess.Popen[bytes]:
    # Each child gets its own process group, so a Ctrl-C reaches us alone and we stop them in order. As
    # they are out of reach of the terminal's signals, each gets SIGTERM from the kernel if we die without
    # stopping them (a kill -9): a graceful stop, the same as ours (parent_death.py says how).
    return subprocess.Popen(
        dies_with_parent([sys.executable, "-m", "newsdesk", *arguments], signal.SIGTERM),
        env=env,
        start_new_session=True,
        pass_fds=pass_fds,
    )


def _check_port(host: str, port: int) -> None:
    """CannotStart if the API's address is taken: its /readyz would be another service's answer."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            probe.bind((host, port))
        except OSError as error:
            raise CannotStart(f"{host}:{port} is not free for the API: {error.strerror or error}") from error


def _wait_until_up(
    url: str,
    children: Mapping[str, subprocess.Popen[bytes]],
    stopping: Callable[[], bool],
    timeout: float = 60.0,
) -> bool:
    """Whether the service came up (False: a stop was asked for first); RuntimeError if it cannot."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stopping():
            return False
        for name, child in children.items():
            if child.poll() is not None:
                raise RuntimeError(
                    f"{name} exited during start-up (status {child.returncode}); see its log above"
                )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return not stopping()
        time.sleep(0.25)
    raise RuntimeError(f"the service was not ready at {url} within {timeout:.0f} s")


class Stop:
    """What the stop signals asked for: the first, a stop in order; one while stopping, a quick stop.

    Only flags, checked between the steps and while waiting for a child: an exception raised wherever a
    signal lands could leave a child started but not yet recorded, or cut the orderly stop short.
    """

    def __init__(self) -> None:
        self.requested = False  # a stop signal came before the service was stopping
        self.underway = False  # stopping: for a signal, or because a child exited or never came up
        self.signalled = False  # a stop signal came, before or while stopping
        self.at_once = False  # a second stop signal came

    def begin(self) -> None:
        self.underway = True

    def on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        # Only a second signal hurries the stop: the first, even while a child's exit is already
        # stopping the service, lets the requests and analyses in progress finish.
        if not self.signalled:
            self.signalled = True
            if not self.underway:
                self.requested = self.underway = True
            _say(FIRST_STOP_NOTICE)
        elif not self.at_once:
            self.at_once = True
            _say(QUICK_STOP_NOTICE)


def _say(line: str) -> None:
    """One line on stderr, from a signal handler: os.write, as a print there could land in the middle of
    another print and raise (a reentrant call into the buffered stream)."""
    with contextlib.suppress(OSError):  # a hung-up terminal: nobody to tell
        os.write(sys.stderr.fileno(), (line + "\n").encode())


def _signal_group(child: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    """`signum` to the child and the processes it started (its process group: _spawn's own session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signum)


def _stop_api_at_once(api: subprocess.Popen[bytes]) -> None:
    # gunicorn's quick stop is SIGQUIT; its workers get it too, because an arbiter older than gunicorn 27
    # reads no signal while it waits for its workers' graceful stop.
    _signal_group(api, signal.SIGQUIT)


def _stop_worker_at_once(worker: subprocess.Popen[bytes]) -> None:
    # Celery's cold shutdown, also from the middle of its warm one: the pool processes are terminated,
    # and the messages of their analyses, never acknowledged, go back to Redis (acks_late).
    with contextlib.suppress(ProcessLookupError):
        worker.send_signal(signal.SIGQUIT)


def _stop(
    child: subprocess.Popen[bytes],
    timeout: float,
    stop: Stop,
    at_once: Callable[[subprocess.Popen[bytes]], None],
) -> None:
    """Stop the child gracefully (SIGTERM) within `timeout` s, or with `at_once` from when stop.at_once is
    set; past the time, kill it and whatever it started, so that nothing is left running."""
    if child.poll() is not None:
        return
    quick = stop.at_once
    if quick:
        at_once(child)
    else:
        child.send_signal(signal.SIGTERM)  # a Celery worker finishes its running tasks on SIGTERM
    deadline = time.monotonic() + (QUICK_STOP_TIMEOUT if quick else timeout)
    while True:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(0.1)
            return
        if not quick and stop.at_once:
            quick = True
            at_once(child)
            deadline = min(deadline, time.monotonic() + QUICK_STOP_TIMEOUT)
        if time.monotonic() > deadline:
            _signal_group(child, signal.SIGKILL)
            child.wait()
            return


def run_local(
    settings: Settings, *, host: str, port: int, data_dir: Path, concurrency: int, explicit_url: bool
) -> int:
    """Start Redis (unless REDIS_URL is set), load the seeds, start a worker and the API.

    Runs until a signal (Ctrl-C, SIGTERM, SIGHUP) or a child's exit, then stops everything in order: the
    API (no new work), the worker (its running tasks finish and are saved), Redis last. A signal during
    start-up stops what was started so far, as promptly. A signal while stopping hurries the stop: the
    API and the worker get their quick stop (running requests and analyses are cut off); Redis is still
    stopped last, and saves. Killed (SIGKILL), it stops nothing itself: the kernel sends the API and the
    worker SIGTERM (parent_death.py), and Redis is stopped once they have gone (redis_for).
    """
    stop = Stop()
    previous = {signum: signal.signal(signum, stop.on_signal) for signum in STOP_SIGNALS}
    try:
        _run(settings, host, port, data_dir, concurrency, explicit_url, stop)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0 if stop.requested else 1


def _run(
    settings: Settings,
    host: str,
    port: int,
    data_dir: Path,
    concurrency: int,
    explicit_url: bool,
    stop: Stop,
) -> None:
    def stopping() -> bool:
        return stop.underway

    _check_port(host, port)
    with redis_for(settings, data_dir, explicit_url) as local_redis:
        local = Settings.from_env(redis_url=local_redis.url)
        added, unchanged = add_seeds(
            Store.from_settings(local), read_seeds(local.seeds_dir), stopping=stopping
        )
        log.info(
            "seeds loaded", extra={"added": added, "unchanged": unchanged, "folder": str(local.seeds_dir)}
        )
        if stopping():
            return  # leaving the block stops Redis
        env = {**os.environ, "REDIS_URL": local_redis.url}
        worker = _spawn(["worker", "--concurrency", str(concurrency)], env, local_redis.pass_fds)
        api = _spawn(["api", "--host", host, "--port", str(port)], env, local_redis.pass_fds)
        watched = {"the API": api, "the worker": worker}
        if local_redis.server is not None:
            watched["the embedded Redis"] = local_redis.server
        shown = "127.0.0.1" if host in {"0.0.0.0", "::"} else host  # noqa: S104 - display only
        url = f"http://{f'[{shown}]' if ':' in shown else shown}:{port}"
        try:
            if _wait_until_up(url, watched, stopping):
                print(f"newsdesk is running at {url}  (API docs: {url}/docs; Ctrl-C stops it)", flush=True)
                while not stopping() and all(child.poll() is None for child in watched.values()):
                    time.sleep(0.2)
                for name, child in watched.items():
                    if not stopping() and child.poll() is not None:
                        print(
                            f"newsdesk: {name} exited (status {child.returncode}); stopping", file=sys.stderr
                        )
        except RuntimeError as error:
            print(f"newsdesk: {error}", file=sys.stderr)
        finally:
            # In this order: the API stops taking requests (gunicorn lets requests in progress, a long
            # poll too, finish within its graceful timeout), the worker finishes its running tasks (and
            # writes their results to Redis), then Redis, still up until here, stops as the block ends.
            stop.begin()
            log.info("stopping the API and the worker")
            _stop(api, API_GRACEFUL_TIMEOUT + 5, stop, _stop_api_at_once)
            _stop(worker, local.task_time_limit + 5, stop, _stop_worker_at_once)
