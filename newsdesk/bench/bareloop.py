"""The baseline for worker throughput: the same analysis code (`Analyzers`, all three analyses of each
article) in a plain loop on N processes: no HTTP, no queue, no result writes."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier

from newsdesk.bench.analyses import as_article
from newsdesk.settings import Settings
from newsdesk.store import ANALYSES, Store
from workers.pipeline import Analyzers


@dataclass(frozen=True)
class BareLoop:
    articles: int
    seconds: float  # from the first process's start to the last one's end
    cpu_s: float  # CPU time of the loops themselves (all processes; their warm-up excluded)

    @property
    def rate(self) -> float:
        """Articles per second."""
        return self.articles / self.seconds


def _loop(settings: Settings, texts: Sequence[str], barrier: Barrier) -> tuple[float, float, float]:
    """Warm up, wait for the others, analyse the texts; returns (start, end) on the shared monotonic clock
    and the CPU seconds the loop took."""
    analyzers = Analyzers(settings, Store.from_settings(settings))
    for name in ANALYSES:
        analyzers.get(name)(as_article(texts[0]))
    barrier.wait()
    started, cpu = time.monotonic(), time.process_time()
    for number, text in enumerate(texts):
        article = as_article(text, number)
        for name in ANALYSES:
            analyzers.get(name)(article)
    return started, time.monotonic(), time.process_time() - cpu


def bare_loop(settings: Settings, texts: Sequence[str], processes: int) -> BareLoop:
    """`processes` processes sharing the texts in a plain loop."""
    context = multiprocessing.get_context("spawn")  # fresh interpreters, as worker processes are
    manager = context.Manager()
    try:
        barrier = manager.Barrier(processes)
        shares = [list(texts[i::processes]) for i in range(processes)]
        with context.Pool(processes) as pool:
            spans = pool.starmap(_loop, [(settings, share, barrier) for share in shares])
    finally:
        manager.shutdown()
    started = min(start for start, _, _ in spans)
    ended = max(end for _, end, _ in spans)
    return BareLoop(len(texts), ended - started, sum(cpu for _, _, cpu in spans))
