"""Each analysis alone, through the code the workers run: `Analyzers.summary|stance|duplicates` on an
article, in this process, one article at a time (the duplicate check reads the stored seeds from Redis)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from newsdesk.bench.report import Row, spread
from newsdesk.settings import Settings
from newsdesk.store import ANALYSES, AnalysisState, Article, Store
from workers.pipeline import Analyzers

# Issue 4's targets for one 4 KB article (medians).
TARGET_4KB_MS = {"summary": 20.0, "stance": 100.0}


def as_article(text: str, number: int = 0) -> Article:
    """An article as a worker reads it from the store, made in memory."""
    queued = AnalysisState("queued", None, None, None, 0, None, None)
    return Article(
        id=f"bench-{number}",
        status="queued",
        text=text,
        metadata={},
        options={},
        created_at="",
        updated_at="",
        finished_at=None,
        analyses=dict.fromkeys(ANALYSES, queued),
    )


def time_analysis(analyzers: Analyzers, name: str, texts: Sequence[str]) -> list[float]:
    """Milliseconds per article for one analysis over the texts, after one untimed warm-up run."""
    run = analyzers.get(name)
    run(as_article(texts[0]))  # loads the stance model, fills the seed index and the word caches
    timings = []
    for number, text in enumerate(texts):
        article = as_article(text, number)
        started = time.perf_counter()
        run(article)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def measure_analyses(
    settings: Settings, store: Store, real: Sequence[str], four_kb: Sequence[str], seeds_stored: int
) -> list[Row]:
    analyzers = Analyzers(settings, store)
    rows = []
    for name in ANALYSES:
        figures = spread(time_analysis(analyzers, name, real))
        rows.append(
            Row(
                "analyses",
                f"{name}, real-size articles",
                figures["p50"],
                "ms/article",
                f"p95 {figures['p95']} ms; {figures['count']} articles"
                + (f"; {seeds_stored} seeds stored" if name == "duplicates" else ""),
                extra=figures,
            )
        )
        if name in TARGET_4KB_MS:
            target = TARGET_4KB_MS[name]
            small = spread(time_analysis(analyzers, name, four_kb))
            rows.append(
                Row(
                    "analyses",
                    f"{name}, 4 KB articles",
                    small["p50"],
                    "ms/article",
                    f"p95 {small['p95']} ms; {small['count']} articles",
                    f"p50 <= {target:.0f} ms",
                    small["p50"] <= target,
                    extra=small,
                )
            )
    return rows
