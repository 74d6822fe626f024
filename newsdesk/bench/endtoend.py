"""End to end through HTTP, Redis and worker processes: what the API accepts, what the workers finish,
and how long an article takes from submission to `done`.

Latency is the article's own stored timestamps, `created_at` (the API stored it) to `finished_at` (its
last analysis stored its result), so the benchmark's polling adds nothing to it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import httpx

from newsdesk.bench.bareloop import bare_loop_rate
from newsdesk.bench.load import burst
from newsdesk.bench.processes import cpu_seconds, peak_rss_mb
from newsdesk.bench.report import Row, spread
from newsdesk.bench.stack import BenchStack

API_TARGET_PER_S = 300.0
LIGHT_TARGET_MS = 150.0
RATIO_TARGET = 0.8


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
    while unfinished(stack, ids):
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{unfinished(stack, ids)} of {len(ids)} articles unfinished after {timeout} s"
            )
        for worker in stack.workers:
            if not worker.alive():
                raise RuntimeError(f"{worker.name} died:\n{worker.log_tail()}")
        time.sleep(poll)


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
class WorkerFigures:
    processes: int
    rate: float  # articles per second, fully analysed
    light: dict[str, float]
    saturation: dict[str, float]


def measure_workers(
    stack: BenchStack,
    processes: int,
    texts: Sequence[str],
    light_texts: Sequence[str],
    *,
    light_interval: float,
    saturation_articles: int,
    memory: PeakMemory,
) -> WorkerFigures:
    stack.start_workers(processes)
    with httpx.Client(base_url=stack.api_url, timeout=30) as client:
        warm = [submit_one(client, text) for text in texts[: 4 * processes]]
        wait_done(stack, warm, 120)
        stack.clear_articles()

        # Throughput: every article submitted at once; from the first stored to the last finished.
        submitted = burst(stack.api_url, texts, connections=4).article_ids
        wait_done(stack, submitted, 60 + 5 * len(texts))
        times = article_times(stack, submitted)
        rate = len(times) / ((max(f for _, f in times) - min(c for c, _ in times)) / 1000)

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
    return WorkerFigures(processes, rate, spread(light), spread(saturation))


def measure_end_to_end(
    stack: BenchStack,
    texts: Sequence[str],
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
            four_kb,
            light_interval=light_interval,
            saturation_articles=saturation_articles,
            memory=memory,
        )
        for count in worker_counts
    ]
    memory.record_api(stack)
    bare = {count: bare_loop_rate(stack.settings, texts, count) for count in worker_counts}
    for figure in figures:
        n = figure.processes
        plural = "es" if n > 1 else ""
        rows += [
            Row(
                "end-to-end",
                f"articles analysed, {n} worker process{plural}",
                round(figure.rate, 2),
                "/s",
                f"{len(texts)} real-size articles submitted at once; first stored to last done",
            ),
            Row(
                "end-to-end",
                f"submission->done at light load, {n} process{plural}",
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
                f"submission->done at saturation, {n} process{plural}",
                figure.saturation["p50"],
                "ms p50",
                f"p95 {figure.saturation['p95']} p99 {figure.saturation['p99']} ms; "
                f"{figure.saturation['count']:.0f} articles, {2 * n} kept in flight",
                extra=figure.saturation,
            ),
        ]
    for n, rate in bare.items():
        rows.append(
            Row("end-to-end", f"bare loop, {n} process{'es' if n > 1 else ''}", round(rate, 2), "/s",
                "the same three analyses per article in a plain loop: no HTTP, queue or result writes")
        )  # fmt: skip
    for figure in figures:
        ratio = figure.rate / bare[figure.processes]
        rows.append(
            Row(
                "end-to-end",
                f"{figure.processes} worker processes / bare loop",
                round(100 * ratio, 1),
                "%",
                f"{figure.rate:.2f} / {bare[figure.processes]:.2f} articles/s",
                f">= {RATIO_TARGET:.0%}" if figure.processes == 2 else "",
                ratio >= RATIO_TARGET if figure.processes == 2 else None,
            )
        )
    return rows
