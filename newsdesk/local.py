"""`newsdesk run`: the whole service on one machine (Redis, API, worker) as supervised child processes."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import redis

from newsdesk.embedded import EmbeddedRedis
from newsdesk.seeds import add_seeds, read_seeds
from newsdesk.settings import Settings
from newsdesk.store import Store

log = logging.getLogger(__name__)


# While `newsdesk run` runs its embedded Redis, the server's URL is in this file of its data folder, so
# that `newsdesk seeds` run beside it (with no REDIS_URL) reaches the same Redis: its port is a free one.
URL_FILE = "redis.url"


@contextlib.contextmanager
def redis_for(settings: Settings, data_dir: Path, explicit_url: bool) -> Iterator[str]:
    """The Redis URL to use: the configured one, or an embedded server's for the block's duration."""
    if explicit_url:
        yield settings.redis_url
        return
    with EmbeddedRedis(data_dir / "redis") as server:
        log.info("embedded redis started", extra={"url": server.url, "data_dir": str(data_dir / "redis")})
        url_file = data_dir / URL_FILE
        url_file.write_text(server.url + "\n", encoding="utf-8")
        try:
            yield server.url
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


def _spawn(arguments: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Each child gets its own process group, so a Ctrl-C reaches us alone and we stop them in order.
    return subprocess.Popen([sys.executable, "-m", "newsdesk", *arguments], env=env, start_new_session=True)


def _wait_until_up(url: str, children: list[subprocess.Popen[bytes]], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            raise RuntimeError("a service process exited during start-up; see its log above")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return
        time.sleep(0.25)
    raise RuntimeError(f"the service was not ready at {url} within {timeout:.0f} s")


def _stop(child: subprocess.Popen[bytes], timeout: float) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)  # a Celery worker finishes its running tasks on SIGTERM
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def run_local(
    settings: Settings, *, host: str, port: int, data_dir: Path, concurrency: int, explicit_url: bool
) -> int:
    """Start Redis (unless REDIS_URL is set), load the seeds, start a worker and the API.

    Runs until a signal (Ctrl-C) or a child's exit, then stops everything in order.
    """
    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    with redis_for(settings, data_dir, explicit_url) as redis_url:
        local = Settings.from_env(redis_url=redis_url)
        added, unchanged = add_seeds(Store.from_settings(local), read_seeds(local.seeds_dir))
        log.info(
            "seeds loaded", extra={"added": added, "unchanged": unchanged, "folder": str(local.seeds_dir)}
        )
        # From here a signal stops the children in order; until now it simply ends the start-up (and
        # a Redis that cannot be reached, or a bad seed file, ends it with an error for the caller).
        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        env = {**os.environ, "REDIS_URL": redis_url}
        worker = _spawn(["worker", "--concurrency", str(concurrency)], env)
        api = _spawn(["api", "--host", host, "--port", str(port)], env)
        children = [api, worker]
        url = f"http://{'127.0.0.1' if host in {'0.0.0.0', '::'} else host}:{port}"  # noqa: S104 - display only
        try:
            _wait_until_up(url, children)
            print(f"newsdesk is running at {url}  (API docs: {url}/docs; Ctrl-C stops it)", flush=True)
            while not stopping and all(child.poll() is None for child in children):
                time.sleep(0.2)
        except RuntimeError as error:
            print(f"newsdesk: {error}", file=sys.stderr)
        finally:
            _stop(api, 10)
            _stop(worker, local.task_time_limit + 5)
    return 0 if stopping else 1
