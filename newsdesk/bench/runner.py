"""Runs the selected parts of the benchmark in one go and gathers their rows into one report."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from newsdesk.bench.analyses import measure_analyses
from newsdesk.bench.data import DEFAULT_DATA, load_bench_data
from newsdesk.bench.duplicates import measure_duplicates, seed_corpus
from newsdesk.bench.endtoend import PeakMemory, measure_end_to_end, submit_one, wait_done
from newsdesk.bench.report import Report, Row
from newsdesk.bench.stack import BenchStack

PARTS = ("analyses", "e2e", "duplicates", "memory")


@dataclass(frozen=True)
class BenchOptions:
    parts: Sequence[str] = PARTS
    seed_sizes: Sequence[int] = (1_000, 10_000, 100_000)
    worker_counts: Sequence[int] = (1, 2, 4)
    data_dir: Path = DEFAULT_DATA
    articles: int = 200  # per analysis, for the API's submissions, the warm-up and the saturation run
    # Queued, then drained by N worker processes, and analysed by the bare loop on N processes: large
    # enough that the window lasts several seconds, so start and end effects (the first message fetched,
    # the last process finishing alone) are a small part of it.
    backlog_articles: int = 400
    four_kb_articles: int = 50
    api_seconds: float = 5.0
    light_articles: int = 20
    light_interval: float = 0.5
    saturation_articles: int = 60
    duplicate_queries: int = 100
    brute_force_queries: int = 10

    @classmethod
    def quick(cls, **overrides: object) -> BenchOptions:
        """Tiny sizes: checks that every part runs, in well under a minute; the figures mean little."""
        values: dict[str, object] = {
            "seed_sizes": (100, 300),
            "worker_counts": (2,),
            "articles": 4,
            "backlog_articles": 6,
            "four_kb_articles": 3,
            "api_seconds": 0.5,
            "light_articles": 2,
            "light_interval": 0.1,
            "saturation_articles": 4,
            "duplicate_queries": 4,
            "brute_force_queries": 2,
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min) on {os.cpu_count()} CPUs"


def run_bench(options: BenchOptions) -> Report:
    unknown = set(options.parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    data = load_bench_data(options.data_dir)
    context: dict[str, object] = {
        "command": "newsdesk bench",
        "articles": data.source,
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "load average at start": _load(),
    }
    started = time.monotonic()
    rows: list[Row] = []
    texts = data.texts(options.articles)
    backlog = data.texts(options.backlog_articles)
    four_kb = data.four_kb(max(options.four_kb_articles, options.light_articles))
    memory = PeakMemory()
    with BenchStack() as stack:
        smallest = min(options.seed_sizes)
        stack.load_seeds(seed_corpus(data, smallest))
        context["seeds stored for analyses and e2e"] = smallest
        if "analyses" in options.parts:
            rows += measure_analyses(
                stack.settings, stack.store, texts, four_kb[: options.four_kb_articles], smallest
            )
        if "e2e" in options.parts:
            rows += measure_end_to_end(
                stack,
                texts,
                backlog,
                four_kb[: options.light_articles],
                options.worker_counts,
                api_seconds=options.api_seconds,
                light_interval=options.light_interval,
                saturation_articles=options.saturation_articles,
                memory=memory,
            )
        elif "memory" in options.parts:
            _exercise_for_memory(stack, texts, memory)
        if "memory" in options.parts:
            rows += memory.rows()
        if "duplicates" in options.parts:
            rows += measure_duplicates(
                stack.settings,
                stack.store,
                data,
                options.seed_sizes,
                queries=options.duplicate_queries,
                brute_force_queries=options.brute_force_queries,
            )
    context["load average at end"] = _load()
    context["took"] = f"{time.monotonic() - started:.0f} s"
    return Report(rows, context)


def _exercise_for_memory(stack: BenchStack, texts: Sequence[str], memory: PeakMemory) -> None:
    """Without the end-to-end part: an API and one worker process analyse the articles, for their peaks."""
    import httpx  # noqa: PLC0415

    stack.start_api()
    stack.start_workers(1)
    with httpx.Client(base_url=stack.api_url, timeout=30) as client:
        ids = [submit_one(client, text) for text in texts]
    wait_done(stack, ids, 60 + 5 * len(ids))
    memory.record_api(stack)
    memory.record_workers(stack)
    stack.stop_workers()
