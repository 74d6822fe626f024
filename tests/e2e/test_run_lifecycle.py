"""`newsdesk run` as a terminal drives it: Ctrl-C (once, or twice to hurry), a hang-up, a second run on
the same data, a stop during start-up, a kill -9. Each test runs a real `newsdesk run` (embedded Redis, in
a temporary data folder) and signals its whole process group, as a terminal does, then checks which
processes are left."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from newsdesk.embedded import EmbeddedRedis, free_port
from newsdesk.local import FIRST_STOP_NOTICE, LOCK_FILE, QUICK_STOP_NOTICE, URL_FILE
from newsdesk.settings import Settings
from newsdesk.store import Store
from tests.conftest import SEEDS, ServiceProcess, wait_for
from workers.celery_app import CeleryBrokerView, create_celery

pytestmark = pytest.mark.e2e

SEED_TEXTS = [p.read_text(encoding="utf-8") for p in sorted(SEEDS.glob("*.txt"))]
LONG_ARTICLE = "\n\n".join(SEED_TEXTS[i % len(SEED_TEXTS)] for i in range(40))  # a few seconds of stance


def children_of(pid: int) -> set[int]:
    """The processes whose parent is `pid` (Linux: read from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")"
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(stat.parent.name))
    return found


def descendants_of(pid: int) -> set[int]:
    """Children, their children (gunicorn's workers, Celery's pool processes), and so on."""
    found: set[int] = set()
    parents = {pid}
    while parents:
        children = set().union(*(children_of(parent) for parent in parents)) - found
        found |= children
        parents = children
    return found


def data_folder_locked(data_dir: Path) -> bool:
    """Whether a `newsdesk run` or any of the processes it started holds the data folder's lock."""
    with (data_dir / LOCK_FILE).open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(lock, fcntl.LOCK_UN)
        return False


def command_of(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing


class Run:
    """A `newsdesk run` with its own port and data folder; `stop_all` kills whatever it left behind."""

    def __init__(self, tmp_path: Path, name: str = "run", env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = tmp_path / "data"
        environment = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # the embedded default
        environment.update(PYTHONUNBUFFERED="1", **(env or {}))
        arguments = ["run", "--port", str(self.port), "--data-dir", str(self.data_dir), "--concurrency", "1"]
        self.service = ServiceProcess(name, arguments, environment, tmp_path / f"{name}.log")
        self.children: set[int] = set()
        self.descendants: set[int] = set()  # the children and every process they started

    def start(self) -> Run:
        self.service.start()
        return self

    def wait_running(self) -> None:
        wait_for(
            lambda: f"newsdesk is running at {self.url}" in self.service.log(),
            60,
            "newsdesk run",
            self.service,
        )
        self.children = children_of(self.service.pid)  # Redis's keeper (redis-server under it), worker, API
        assert len(self.children) == 3, self.children
        self.descendants = descendants_of(self.service.pid)
        assert len(self.descendants) > 3, self.descendants  # gunicorn's workers, Celery's pool process

    def store(self) -> Store:
        """The store of this run's embedded Redis."""
        redis_url = (self.data_dir / URL_FILE).read_text().strip()
        return Store.from_settings(Settings.from_env({}, redis_url=redis_url))

    def submit_until_stance_runs(self, text: str) -> str:
        """Submit `text` and wait until the worker is analysing its stance; the article's id."""
        store = self.store()
        response = httpx.post(f"{self.url}/v1/articles", json={"text": text}, timeout=10)
        assert response.status_code == 202, response.text
        article_id: str = response.json()["id"]

        def stance_running() -> bool:
            stored = store.get_article(article_id)
            return stored is not None and stored.analyses["stance"].status == "running"

        wait_for(stance_running, 30, "the stance analysis to start", self.service)
        return article_id

    def signal_group(self, sig: int) -> None:
        """What a terminal does on Ctrl-C (SIGINT) or when it closes (SIGHUP): the whole foreground group."""
        os.killpg(self.service.pid, sig)

    def wait_exit(self, timeout: float) -> int:
        assert self.service.process is not None
        return self.service.process.wait(timeout)

    def stop_all(self) -> None:
        if self.service.alive():
            self.children |= children_of(self.service.pid)
        for pid in [self.service.pid, *self.children, *self.descendants]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)  # the child and its own children (gunicorn's, Celery's)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # one that is not the leader of a group
        if self.service.process is not None:
            self.service.process.wait()


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    started: list[Run] = []
    yield started
    for run in started:
        run.stop_all()


def test_ctrl_c_stops_redis_last_so_the_running_analysis_is_saved(tmp_path: Path, runs: list[Run]) -> None:
    run = Run(tmp_path).start()
    runs.append(run)
    run.wait_running()
    article_id = run.submit_until_stance_runs(LONG_ARTICLE)
    run.signal_group(signal.SIGINT)
    assert run.wait_exit(30) == 0, run.service.log()
    assert not any(alive(pid) for pid in run.children), run.service.log()

    redis_log = (run.data_dir / "redis" / "redis.log").read_text()
    assert "Received SIGINT" not in redis_log  # the terminal's Ctrl-C did not reach Redis
    assert "Received SIGTERM" in redis_log  # stopped by `newsdesk run`, after the others
    # The worker finished the analysis it was running and wrote it before Redis stopped: the append-only
    # file has it done (not "running", left for the sweeper or a redelivery after the next start).
    with EmbeddedRedis(run.data_dir / "redis") as server:
        stored = Store.from_settings(Settings.from_env({}, redis_url=server.url)).get_article(article_id)
    assert stored is not None
    assert stored.analyses["stance"].status == "done", stored.analyses["stance"]


def test_a_hang_up_stops_everything(tmp_path: Path, runs: list[Run]) -> None:
    run = Run(tmp_path).start()
    runs.append(run)
    run.wait_running()
    run.signal_group(signal.SIGHUP)  # the terminal closed, or the SSH connection was lost
    assert run.wait_exit(30) == 0, run.service.log()
    assert not any(alive(pid) for pid in run.children), run.service.log()  # none left orphaned
    assert "Received SIGTERM" in (run.data_dir / "redis" / "redis.log").read_text()


def test_a_second_run_on_the_same_data_folder_is_refused_in_one_line(tmp_path: Path, runs: list[Run]) -> None:
    first = Run(tmp_path).start()
    runs.append(first)
    first.wait_running()
    second = Run(tmp_path, "run-2").start()  # the same data folder, another port
    runs.append(second)
    assert second.wait_exit(30) == 1
    output = second.service.log()
    assert "Traceback" not in output
    assert output.strip().splitlines()[-1] == (
        f"Error: {first.data_dir} is in use by another `newsdesk run` or the processes it started "
        f"(pid {first.service.pid} started them); stop those first, or give this one another --data-dir"
    )
    redis_log = (first.data_dir / "redis" / "redis.log").read_text()
    assert redis_log.count("Redis is starting") == 1  # no second redis-server on the same files
    assert httpx.get(f"{first.url}/readyz", timeout=5).status_code == 200  # the first is undisturbed


def test_ctrl_c_during_start_up_stops_everything_at_once(tmp_path: Path, runs: list[Run]) -> None:
    # A worker that never starts (held in sitecustomize), so the service never becomes ready.
    hold = tmp_path / "hold"
    hold.mkdir()
    (hold / "sitecustomize.py").write_text(
        'import sys, time\nif sys.argv[1:2] == ["worker"]:\n    time.sleep(600)\n', encoding="utf-8"
    )
    pythonpath = os.pathsep.join(filter(None, [str(hold), os.environ.get("PYTHONPATH")]))
    run = Run(tmp_path, env={"PYTHONPATH": pythonpath}).start()
    runs.append(run)
    wait_for(
        lambda: httpx.get(f"{run.url}/healthz", timeout=1).status_code == 200, 60, "the API", run.service
    )
    run.children = children_of(run.service.pid)
    assert len(run.children) == 3, run.children
    assert httpx.get(f"{run.url}/readyz", timeout=5).status_code == 503  # still starting up

    run.signal_group(signal.SIGINT)
    assert run.wait_exit(20) == 0, run.service.log()  # not after the 60 s start-up limit
    assert "newsdesk is running" not in run.service.log()
    assert not any(alive(pid) for pid in run.children), run.service.log()


def test_a_killed_run_takes_its_processes_with_it_redis_last_and_frees_the_data_folder(
    tmp_path: Path, runs: list[Run]
) -> None:
    first = Run(tmp_path).start()
    runs.append(first)
    first.wait_running()
    article_id = first.submit_until_stance_runs(LONG_ARTICLE)
    os.kill(first.service.pid, signal.SIGKILL)  # no cleanup of its own: the kernel's SIGTERM to each child
    assert first.wait_exit(10) == -signal.SIGKILL
    assert data_folder_locked(first.data_dir)  # by its processes, stopping (the worker saving its analysis)
    wait_for(lambda: not any(alive(pid) for pid in first.descendants), 60, "the killed run's processes to go")
    assert not data_folder_locked(first.data_dir)
    redis_log = (first.data_dir / "redis" / "redis.log").read_text()
    assert "Received SIGTERM" in redis_log  # a clean shutdown: the append-only file fsynced
    assert "ready to exit" in redis_log

    # The folder is free again (no second redis-server ever ran beside the first on the same files), and
    # Redis stopped after the worker had saved the analysis it was running (not "running", left for a
    # redelivery after the visibility timeout).
    second = Run(tmp_path, "run-2").start()
    runs.append(second)
    wait_for(
        lambda: "embedded redis started" in second.service.log(), 30, "the second run's Redis", second.service
    )
    stored = second.store().get_article(article_id)
    assert stored is not None
    assert stored.analyses["stance"].status == "done", stored.analyses["stance"]
    second.signal_group(signal.SIGINT)
    assert second.wait_exit(30) == 0, second.service.log()
    assert (first.data_dir / "redis" / "redis.log").read_text().count("Redis is starting") == 2


def held_analyses_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a run whose worker starts every stance analysis and never ends it (held in
    sitecustomize), so that its warm shutdown would wait for it (up to the task time limit)."""
    hold = tmp_path / "hold"
    hold.mkdir()
    (hold / "sitecustomize.py").write_text(
        "import sys, time\n"
        'if sys.argv[1:2] == ["worker"]:\n'
        "    import workers.analysis.stance as stance\n"
        "    stance.analyse_stance = lambda *_args, **_kwargs: time.sleep(600)\n",
        encoding="utf-8",
    )
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(hold), os.environ.get("PYTHONPATH")]))}


@pytest.mark.parametrize("while_", ["the API finishes a request", "the worker finishes its analysis"])
def test_a_second_ctrl_c_stops_at_once(tmp_path: Path, runs: list[Run], while_: str) -> None:
    run = Run(tmp_path, env=held_analyses_env(tmp_path)).start()
    runs.append(run)
    run.wait_running()
    run.submit_until_stance_runs(SEED_TEXTS[0])  # the worker's stop waits for it
    request_outcome: list[object] = []
    requester = threading.Thread(target=lambda: None)
    if while_ == "the API finishes a request":
        # A request in progress, which gunicorn's graceful stop would wait for up to its graceful timeout:
        # a submission whose body is still arriving (a long-poll would be answered at the stop).
        host, port = run.url.removeprefix("http://").split(":")
        upload = socket.create_connection((host, int(port)), timeout=60)
        upload.sendall(
            b"POST /v1/articles HTTP/1.1\r\nHost: newsdesk\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100000\r\n\r\n{"text": "'
        )

        def await_answer() -> None:
            with upload:
                try:
                    request_outcome.append(upload.recv(65536))  # b"": closed without an answer
                except OSError as error:
                    request_outcome.append(error)

        requester = threading.Thread(target=await_answer, daemon=True)
        requester.start()
        time.sleep(1)  # the app reads the body
        run.signal_group(signal.SIGINT)
        wait_for(lambda: "Handling signal: term" in run.service.log(), 10, "the API's stop", run.service)
        time.sleep(1)
        api = next(pid for pid in run.children if command_of(pid)[1:4] == ["-m", "newsdesk", "api"])
        assert alive(api)  # draining the request
    else:
        run.signal_group(signal.SIGINT)
        wait_for(lambda: "Warm shutdown" in run.service.log(), 40, "the worker's warm stop", run.service)
    assert FIRST_STOP_NOTICE in run.service.log()
    assert QUICK_STOP_NOTICE not in run.service.log()

    assert run.service.alive()
    second = time.monotonic()
    run.signal_group(signal.SIGINT)
    assert run.wait_exit(15) == 0, run.service.log()  # not the API's 20 s, nor the worker's 125 s
    stopped_in = time.monotonic() - second
    output = run.service.log()
    assert output.count(FIRST_STOP_NOTICE) == 1
    assert output.count(QUICK_STOP_NOTICE) == 1
    assert not any(alive(pid) for pid in run.descendants), output
    redis_log = (run.data_dir / "redis" / "redis.log").read_text()
    assert "Received SIGTERM" in redis_log  # still stopped last, and cleanly
    assert "ready to exit" in redis_log
    if while_ == "the API finishes a request":
        requester.join(5)
        # Cut off in the middle (not answered, nor refused: it was in progress when the stop began).
        assert request_outcome[0] == b"" or isinstance(request_outcome[0], ConnectionResetError), (
            request_outcome
        )
    assert stopped_in < 12, stopped_in
    # The analysis cut off went back to its queue, in the data Redis saved: the next start runs it.
    with EmbeddedRedis(run.data_dir / "redis") as server:
        settings = Settings.from_env({}, redis_url=server.url)
        broker = CeleryBrokerView(create_celery(settings), Store.from_settings(settings).redis, settings)
        assert sum(broker.queue_depths().values()) == 1
        assert not broker.held()


def test_a_busy_port_is_refused_before_anything_starts(tmp_path: Path, runs: list[Run]) -> None:
    run = Run(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", run.port))
        taken.listen()
        runs.append(run.start())
        assert run.wait_exit(30) == 1
    output = run.service.log()
    assert output.strip().splitlines()[-1].startswith(f"Error: 127.0.0.1:{run.port} is not free for the API")
    assert "newsdesk is running" not in output
    assert not (run.data_dir / "redis").exists()  # no Redis was started


def test_a_child_that_exits_during_start_up_is_named(tmp_path: Path, runs: list[Run]) -> None:
    # A queue name the worker does not know: the worker refuses to start, the API would have come up.
    run = Run(tmp_path, env={"NEWSDESK_WORKER_QUEUES": "bogus"})
    runs.append(run.start())
    assert run.wait_exit(60) != 0
    output = run.service.log()
    assert "newsdesk: the worker exited during start-up (status 2); see its log above" in output
    assert "newsdesk is running" not in output
