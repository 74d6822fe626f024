"""End to end through HTTP, Redis and worker processes: what the API accepts, what the workers finish,
and how long an article takes from submission to `done`.

Every figure comes from the articles' own stored timestamps, so the benchmark's polling adds nothing:
latency is `created_at` (the API stored it) to `finished_at` (its last analysis stored its result).

Worker throughput, the figure compared with the bare loop, is taken on a backlog: every article is
submitted through the API while the workers are held (they take no message), then the workers drain it,
and the window runs from the first analysis's `started_at` to the last `finished_at`. So the API's CPU
(milliseconds per submission) does not compete with the worker processes for the cores, and worker
start-up and first-task warm-up (the stance model's loading) happened before. `created_at` would not do
as the start: the articles were stored while the workers were held. The cost of queue and storage is
all inside the window: fetching and acknowledging the messages, reading the article, writing results.
The old figure, articles submitted while the workers run, is kept beside it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import httpx

from newsdesk.bench.bareloop import BareLoop, bare_loop
from newsdesk.bench.load import BurstResult, burst
from newsdesk.bench.processes import cpu_seconds, machine_cpu_seconds, peak_rss_mb
from newsdesk.bench.report import Row, spread
from newsdesk.bench.stack import BenchStack
from newsdesk.store import ANALYSES

API_TARGET_PER_S = 300.0
LIGHT_TARGET_MS = 150.0
RATIO_TARGET = 0.8
# Runs of the drained backlog and of the bare loop per process count; the faster of each is compared. They
# run at different moments, and on a shared machine a slow moment (seen: 30 instead of 24 ms of CPU per
# article within one bench run) would decide the share by itself: best against best treats both alike.
BEST_OF = 2
# Rounds of warm-up articles at most, until every worker process has run every analysis once.
WARM_UP_ROUNDS = 5
# How often a throughput run looks whether its articles are done: the figures come from stored
# timestamps, so a coarse poll loses nothing and leaves the cores to the workers.
THROUGHPUT_POLL_S = 0.25


@dataclass
class PeakMemory:
    """The highest VmHWM seen per kind of process, in MiB."""

    api_worker: float = 0.0
    api_master: float = 0.0
    analysis_process: float = 0.0  # a Celery pool process: runs the analyses
    worker_main: float = 0.0  # the Celery main process: consumes, dispatches, heartbeat, sweeper
    seen: dict[str, int] = field(default_factory=dict)

    def record_api(self, stack: BenchStack) -> None:
        if stack.api is None:
            return
        master, *workers = stack.api.tree()
        self.api_master = max(self.api_master, peak_rss_mb(master) or 0.0)
        for pid in workers:
            self.api_worker = max(self.api_worker, peak_rss_mb(pid) or 0.0)

    def record_workers(self, stack: BenchStack) -> None:
        for worker in stack.workers:
            main, *pool = worker.tree()
            self.worker_main = max(self.worker_main, peak_rss_mb(main) or 0.0)
            for pid in pool:
                self.analysis_process = max(self.analysis_process, peak_rss_mb(pid) or 0.0)

    def rows(self) -> list[Row]:
        return [
            Row("memory", "peak RSS, API process", round(self.api_worker, 1), "MiB",
                f"the gunicorn worker serving requests; its master {self.api_master:.0f} MiB"),
            Row("memory", "peak RSS, worker process", round(self.analysis_process, 1), "MiB",
                f"the Celery pool process running analyses; its main process {self.worker_main:.0f} MiB"),
        ]  # fmt: skip


def _ms(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp() * 1000


def article_times(stack: BenchStack, ids: Sequence[str]) -> list[tuple[float, float]]:
    """(created, finished) in ms since the epoch, of finished articles."""
    pipe = stack.store.redis.pipeline(transaction=False)
    for article_id in ids:
        pipe.hmget(f"{stack.store.prefix}:article:{article_id}", "created_at", "finished_at")
    return [(_ms(c.decode()), _ms(f.decode())) for c, f in pipe.execute() if c and f]


def unfinished(stack: BenchStack, ids: Sequence[str]) -> int:
    pipe = stack.store.redis.pipeline(transaction=False)
    for article_id in ids:
        pipe.hget(f"{stack.store.prefix}:article:{article_id}", "status")
    return sum(1 for status in pipe.execute() if status not in {b"done", b"failed"})


def wait_done(stack: BenchStack, ids: Sequence[str], timeout: float, poll: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    # Each measurement starts from a cleared store, so a non-empty pending set (one cheap ZCARD) means
    # the articles are still being analysed; the per-article check runs only once it is empty.
    while stack.store.pending_count() or unfinished(stack, ids):
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{unfinished(stack, ids)} of {len(ids)} articles unfinished after {timeout} s"
            )
        for worker in stack.workers:
            if not worker.alive():
                raise RuntimeError(f"{worker.name} died:\n{worker.log_tail()}")
        time.sleep(poll)


def analysis_window(stack: BenchStack, ids: Sequence[str]) -> tuple[int, int, float]:
    """(finished articles, failed ones, seconds from the first analysis's start to the last finish)."""
    starts = [f"{name}:started_at" for name in ANALYSES]
    pipe = stack.store.redis.pipeline(transaction=False)
    for article_id in ids:
        pipe.hmget(f"{stack.store.prefix}:article:{article_id}", "status", "finished_at", *starts)
    first_start, last_finish, finished, failed = float("inf"), float("-inf"), 0, 0
    for status, finished_at, *started in pipe.execute():
        if not finished_at:
            continue
        finished += 1
        failed += status == b"failed"
        last_finish = max(last_finish, _ms(finished_at.decode()))
        first_start = min([first_start, *(_ms(stamp.decode()) for stamp in started if stamp)])
    return finished, failed, (last_finish - first_start) / 1000


def started_count(stack: BenchStack, ids: Sequence[str]) -> int:
    """Articles any of whose analyses has started."""
    pipe = stack.store.redis.pipeline(transaction=False)
    for article_id in ids:
        pipe.hmget(f"{stack.store.prefix}:article:{article_id}", *(f"{name}:started_at" for name in ANALYSES))
    return sum(1 for stamps in pipe.execute() if any(stamps))


def submit_one(client: httpx.Client, text: str) -> str:
    answer = client.post("/v1/articles", json={"text": text})
    answer.raise_for_status()
    return str(answer.json()["id"])


def measure_api(stack: BenchStack, texts: Sequence[str], seconds: float, connections: int) -> Row:
    """Submissions accepted per second by one gunicorn worker process, with no analysis workers running."""
    cpu = cpu_seconds(stack.api.tree()) if stack.api else 0.0
    result = burst(stack.api_url, texts, connections=connections, duration=seconds)
    api_cpu = (cpu_seconds(stack.api.tree()) if stack.api else 0.0) - cpu
    rate = result.accepted / result.seconds
    refused = {code: count for code, count in result.statuses.items() if code != 202}
    latency = spread(result.latencies_ms)
    stack.clear_articles()
    return Row(
        "end-to-end",
        "API submissions accepted",
        round(rate, 1),
        "/s",
        f"{result.accepted} in {result.seconds:.1f} s over {connections} keep-alive connections; "
        f"API CPU {api_cpu / result.seconds:.0%} of a core ({result.accepted / max(api_cpu, 1e-9):.0f} per "
        f"API CPU-second); client CPU {result.client_cpu_s / result.seconds:.0%}; request p50 "
        f"{latency['p50']} ms p99 {latency['p99']} ms" + (f"; refused {refused}" if refused else ""),
        f">= {API_TARGET_PER_S:.0f}/s",
        rate >= API_TARGET_PER_S,
        extra={
            "accepted": result.accepted,
            "seconds": result.seconds,
            "api_cpu_s": api_cpu,
            "client_cpu_s": result.client_cpu_s,
            "per_api_cpu_second": result.accepted / max(api_cpu, 1e-9),
            "refused": refused,
            "request_ms": latency,
        },
    )


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds used so far by the worker processes (the Celery main processes, which fetch, hand over
    and acknowledge the messages, and the pool processes, which run the tasks), Redis and the API; and by
    the whole machine (busy, and all there was), to tell a window where others' processes took the cores."""

    worker_main: float
    worker_pool: float
    redis: float
    api: float
    machine_busy: float
    machine_all: float

    @classmethod
    def now(cls, stack: BenchStack) -> CpuUse:
        trees = [worker.tree() for worker in stack.workers]
        return cls(
            cpu_seconds([main for main, *_ in trees]),
            cpu_seconds([pid for _, *pool in trees for pid in pool]),
            cpu_seconds([stack.redis_pid]) if stack.redis_pid else 0.0,
            cpu_seconds(stack.api.tree()) if stack.api else 0.0,
            *machine_cpu_seconds(),
        )

    @property
    def workers(self) -> float:
        return self.worker_main + self.worker_pool

    def __sub__(self, other: CpuUse) -> CpuUse:
        return CpuUse(
            self.worker_main - other.worker_main,
            self.worker_pool - other.worker_pool,
            self.redis - other.redis,
            self.api - other.api,
            self.machine_busy - other.machine_busy,
            self.machine_all - other.machine_all,
        )

    @property
    def cores_busy(self) -> float:
        """The share of the machine's CPU time that was busy."""
        return self.machine_busy / max(self.machine_all, 1e-9)

    @property
    def service_share(self) -> float:
        """The share of the machine's CPU time that the workers, Redis and the API used."""
        return (self.workers + self.redis + self.api) / max(self.machine_all, 1e-9)

    def load_note(self) -> str:
        return f"cores {self.cores_busy:.0%} busy, {self.service_share:.0%} by the service's processes"


@dataclass(frozen=True)
class Throughput:
    """Articles fully analysed over a window, and the CPU the processes used meanwhile."""

    articles: int
    failed: int
    seconds: float
    cpu: CpuUse

    @property
    def rate(self) -> float:
        """Articles per second."""
        return self.articles / self.seconds

    def cpu_ms(self, seconds: float) -> float:
        """Milliseconds of CPU per article."""
        return 1000 * seconds / self.articles

    def note(self) -> str:
        """CPU per article by process (the API only where it ran meanwhile), how busy the cores were, and
        failed articles if any."""
        api = f"API {self.cpu_ms(self.cpu.api):.1f} ms, " if self.cpu.api > 0 else ""
        return (
            f"CPU per article: {api}workers {self.cpu_ms(self.cpu.workers):.1f} ms (pool "
            f"{self.cpu_ms(self.cpu.worker_pool):.1f}, main {self.cpu_ms(self.cpu.worker_main):.1f}), Redis "
            f"{self.cpu_ms(self.cpu.redis):.1f} ms; {self.cpu.load_note()}"
            + (f"; {self.failed} failed" if self.failed else "")
        )

    def extra(self) -> dict[str, float]:
        return {
            "articles": self.articles,
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
            "worker_cpu_ms_per_article": round(self.cpu_ms(self.cpu.workers), 2),
            "worker_main_cpu_ms_per_article": round(self.cpu_ms(self.cpu.worker_main), 2),
            "worker_pool_cpu_ms_per_article": round(self.cpu_ms(self.cpu.worker_pool), 2),
            "redis_cpu_ms_per_article": round(self.cpu_ms(self.cpu.redis), 2),
            "api_cpu_ms_per_article": round(self.cpu_ms(self.cpu.api), 2),
            "cores_busy": round(self.cpu.cores_busy, 3),
            "service_share_of_cores": round(self.cpu.service_share, 3),
        }


def submit_all(stack: BenchStack, texts: Sequence[str]) -> BurstResult:
    """Every text submitted at once (4 connections); all must be accepted."""
    result = burst(stack.api_url, texts, connections=4)
    if result.accepted != len(texts):
        raise RuntimeError(f"the API accepted {result.accepted} of {len(texts)} articles: {result.statuses}")
    return result


def drained_backlog(stack: BenchStack, texts: Sequence[str]) -> Throughput:
    """Articles per second while the (warm) workers drain a backlog queued through the API beforehand."""
    with stack.workers_held():
        ids = submit_all(stack, texts).article_ids
        if early := started_count(stack, ids):
            raise RuntimeError(f"{early} of {len(ids)} articles were started while the workers were held")
        before = CpuUse.now(stack)
    wait_done(stack, ids, 60 + 5 * len(ids), poll=THROUGHPUT_POLL_S)
    used = CpuUse.now(stack) - before
    finished, failed, seconds = analysis_window(stack, ids)
    stack.clear_articles()
    return Throughput(finished, failed, seconds, used)


def submitted_while_running(stack: BenchStack, texts: Sequence[str]) -> Throughput:
    """Articles per second when they are submitted while the workers run (the API shares the cores with
    the workers): from the first stored to the last finished."""
    before = CpuUse.now(stack)
    ids = submit_all(stack, texts).article_ids
    wait_done(stack, ids, 60 + 5 * len(ids), poll=THROUGHPUT_POLL_S)
    used = CpuUse.now(stack) - before
    times = article_times(stack, ids)
    _, failed, _ = analysis_window(stack, ids)
    seconds = (max(f for _, f in times) - min(c for c, _ in times)) / 1000
    stack.clear_articles()
    return Throughput(len(times), failed, seconds, used)


def warm_up(stack: BenchStack, client: httpx.Client, texts: Sequence[str], processes: int) -> None:
    """Articles through every worker process until each has run every analysis (the first run of an
    analysis in a process loads what it needs: the stance model, the seed index), WARM_UP_ROUNDS at most.
    A process still cold after them (or a store that does not record who ran what) only means that its
    first run falls inside the first measurement."""
    ran: dict[str, set[bytes]] = {name: set() for name in ANALYSES}
    for _ in range(WARM_UP_ROUNDS):
        ids = [submit_one(client, text) for text in texts[: 4 * processes]]
        wait_done(stack, ids, 120)
        pipe = stack.store.redis.pipeline(transaction=False)
        for article_id in ids:
            pipe.hmget(f"{stack.store.prefix}:article:{article_id}", *(f"{name}:worker" for name in ANALYSES))
        for runners in pipe.execute():
            for name, runner in zip(ANALYSES, runners, strict=True):
                if runner:
                    ran[name].add(runner)
        if all(len(runners) >= processes for runners in ran.values()):
            break
    stack.clear_articles()


@dataclass(frozen=True)
class WorkerFigures:
    processes: int
    drained: Throughput  # a backlog queued first, then drained: the figure compared with the bare loop
    concurrent: Throughput  # the same articles submitted while the workers run
    light: dict[str, float]
    saturation: dict[str, float]


def measure_workers(
    stack: BenchStack,
    processes: int,
    texts: Sequence[str],
    backlog: Sequence[str],
    light_texts: Sequence[str],
    *,
    light_interval: float,
    saturation_articles: int,
    memory: PeakMemory,
) -> WorkerFigures:
    stack.start_workers(processes)
    with httpx.Client(base_url=stack.api_url, timeout=30) as client:
        warm_up(stack, client, texts, processes)

        # Throughput, on the same backlog: queued while the workers are held, then drained (the faster
        # of BEST_OF runs); then submitted all at once while the workers run (the figure the bench gave
        # before).
        drained = max((drained_backlog(stack, backlog) for _ in range(BEST_OF)), key=lambda t: t.rate)
        concurrent = submitted_while_running(stack, backlog)

        # Light load: one article at a time, the next `light_interval` after the last was submitted.
        light_ids = []
        for text in light_texts:
            began = time.monotonic()
            light_ids.append(submit_one(client, text))
            wait_done(stack, light_ids[-1:], 60, poll=0.005)
            time.sleep(max(0.0, light_interval - (time.monotonic() - began)))
        light = [f - c for c, f in article_times(stack, light_ids)]

        # Saturation: a closed loop keeping twice as many articles in flight as there are processes.
        in_flight: list[str] = []
        saturated: list[str] = []
        pending_texts = list(texts[:saturation_articles])
        while pending_texts or in_flight:
            while pending_texts and len(in_flight) < 2 * processes:
                in_flight.append(submit_one(client, pending_texts.pop()))
            time.sleep(0.005)
            done = [article_id for article_id in in_flight if not unfinished(stack, [article_id])]
            saturated += done
            in_flight = [article_id for article_id in in_flight if article_id not in done]
        saturation = [f - c for c, f in article_times(stack, saturated)]
    memory.record_workers(stack)
    stack.stop_workers()
    stack.clear_articles()
    return WorkerFigures(processes, drained, concurrent, spread(light), spread(saturation))


def _processes(n: int) -> str:
    return f"{n} process{'es' if n > 1 else ''}"


def _worker_processes(n: int) -> str:
    return f"{n} worker process{'es' if n > 1 else ''}"


def worker_rows(figure: WorkerFigures, bare: BareLoop, light_interval: float) -> list[Row]:
    n, drained, concurrent = figure.processes, figure.drained, figure.concurrent
    return [
        Row(
            "end-to-end",
            f"articles analysed, {_worker_processes(n)}",
            round(drained.rate, 2),
            "/s",
            f"{drained.articles} real-size articles queued through the API with the workers held, then "
            f"drained: first analysis start to last finish, {drained.seconds:.1f} s; {drained.note()}",
            extra=drained.extra(),
        ),
        Row(
            "end-to-end",
            f"articles analysed, {_worker_processes(n)}, submitted while they run",
            round(concurrent.rate, 2),
            "/s",
            f"articles submitted while workers run: API and workers share the cores; the same "
            f"{concurrent.articles} articles, first stored to last done, {concurrent.seconds:.1f} s, "
            f"{concurrent.rate / bare.rate:.0%} of the bare loop; {concurrent.note()}",
            extra={**concurrent.extra(), "share_of_bare_loop": round(concurrent.rate / bare.rate, 4)},
        ),
        Row(
            "end-to-end",
            f"submission->done at light load, {_processes(n)}",
            figure.light["p50"],
            "ms p50",
            f"p95 {figure.light['p95']} p99 {figure.light['p99']} ms; {figure.light['count']:.0f} "
            f"4 KB articles, one every {light_interval} s",
            f"p50 < {LIGHT_TARGET_MS:.0f} ms",
            figure.light["p50"] < LIGHT_TARGET_MS,
            extra=figure.light,
        ),
        Row(
            "end-to-end",
            f"submission->done at saturation, {_processes(n)}",
            figure.saturation["p50"],
            "ms p50",
            f"p95 {figure.saturation['p95']} p99 {figure.saturation['p99']} ms; "
            f"{figure.saturation['count']:.0f} articles, {2 * n} kept in flight",
            extra=figure.saturation,
        ),
    ]


def ratio_row(figure: WorkerFigures, bare: BareLoop) -> Row:
    """The drained backlog's rate over the bare loop's on the same articles; beside it, the same share by
    CPU time (the bare loop's CPU per article over the workers' and Redis's), which a busy machine
    disturbs less than wall-clock rates."""
    drained, n = figure.drained, figure.processes
    ratio = drained.rate / bare.rate
    bare_cpu_ms = 1000 * bare.cpu_s / bare.articles
    service_cpu_ms = drained.cpu_ms(drained.cpu.workers + drained.cpu.redis)
    return Row(
        "end-to-end",
        f"{_worker_processes(n)} / bare loop",
        round(100 * ratio, 1),
        "%",
        f"{drained.rate:.2f} / {bare.rate:.2f} articles/s on the same {bare.articles} articles, the backlog "
        f"drained; by CPU per article {bare_cpu_ms:.1f} ms bare / {service_cpu_ms:.1f} ms workers + Redis "
        f"= {bare_cpu_ms / service_cpu_ms:.0%}",
        f">= {RATIO_TARGET:.0%}" if n == 2 else "",
        ratio >= RATIO_TARGET if n == 2 else None,
        extra={"ratio": round(ratio, 4), "cpu_ratio": round(bare_cpu_ms / service_cpu_ms, 4)},
    )


def measure_end_to_end(
    stack: BenchStack,
    texts: Sequence[str],
    backlog: Sequence[str],
    four_kb: Sequence[str],
    worker_counts: Sequence[int],
    *,
    api_seconds: float,
    light_interval: float,
    saturation_articles: int,
    memory: PeakMemory,
) -> list[Row]:
    if stack.api is None:
        stack.start_api()
    rows = [measure_api(stack, texts, api_seconds, connections=8)]
    memory.record_api(stack)
    figures = [
        measure_workers(
            stack,
            count,
            texts,
            backlog,
            four_kb,
            light_interval=light_interval,
            saturation_articles=saturation_articles,
            memory=memory,
        )
        for count in worker_counts
    ]
    memory.record_api(stack)
    bare = {  # as the drained backlog: the faster of BEST_OF runs
        count: max((bare_loop(stack.settings, backlog, count) for _ in range(BEST_OF)), key=lambda b: b.rate)
        for count in worker_counts
    }
    for figure in figures:
        rows += worker_rows(figure, bare[figure.processes], light_interval)
    for n, loop in bare.items():
        rows.append(
            Row("end-to-end", f"bare loop, {_processes(n)}", round(loop.rate, 2), "/s",
                f"the same three analyses per article in a plain loop: no HTTP, queue or result writes; the "
                f"same {loop.articles} articles as the backlog; the faster of {BEST_OF} runs; CPU "
                f"{1000 * loop.cpu_s / loop.articles:.1f} ms/article",
                extra={"articles": loop.articles, "seconds": round(loop.seconds, 3),
                       "cpu_s": round(loop.cpu_s, 3)})
        )  # fmt: skip
    rows += [ratio_row(figure, bare[figure.processes]) for figure in figures]
    return rows
