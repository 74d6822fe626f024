"""The duplicate check as the stored seed corpus grows, beside a brute-force exact scan of the same corpus.

Seeds are stored in Redis as the service stores them (`Store.add_seeds`, sketch included) and queried as
a worker queries them (`Analyzers.duplicates`: the worker's in-memory index, refreshed from the seed log,
then candidate texts read from Redis and compared exactly). The corpus grows in steps (1k, 10k, 100k by
default) and is measured at each.

Seeds are the corpus articles in file order; past the end of the corpus (13.5k articles) they are made-up
articles from a word-bigram chain over the corpus (`data.synthetic_articles`): realistic word and phrase
frequencies, so stock phrases recur in the index as in real news, but no copied sentences. Queries are
`combined` rewrites (`newsdesk.evaluation.duplicates.rewrite`) of articles stored at every size, so each
has the same true matches throughout.

Brute force is the cheapest exact scan: the query's distinct shingle hashes intersected with every seed's,
the seeds' shingle sets computed in advance (so it reads no text). 1M is an extrapolation, said so.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

import numpy as np

from newsdesk.bench.analyses import as_article
from newsdesk.bench.data import BenchData, synthetic_articles
from newsdesk.bench.report import Row, spread
from newsdesk.evaluation.duplicates import MIN_SOURCE_WORDS, rewrite
from newsdesk.settings import Settings
from newsdesk.store import Seed, Store
from workers.analysis import duplicates
from workers.pipeline import Analyzers

GROWTH_TARGET = 2.0  # query time at the largest size within 2x of the smallest
SPEEDUP_TARGET = 100.0  # at least 100x faster than brute force at the largest size
REDIS_BYTES_TARGET = 4096  # Redis memory per seed for the duplicate index
ESTIMATE_SIZE = 1_000_000


def seed_corpus(data: BenchData, count: int) -> list[tuple[str, str]]:
    """`count` (id, text) seeds: the articles in order, then synthetic ones."""
    real = [(article.id, article.text) for article in data.articles][:count]
    missing = count - len(real)
    made = synthetic_articles([a.text for a in data.articles], missing) if missing > 0 else []
    return real + [(f"synthetic-seed-{i}", text) for i, text in enumerate(made)]


def query_texts(data: BenchData, among: int, count: int) -> list[str]:
    """Rewrites of `count` articles drawn from the first `among` (stored at every size)."""
    rng = random.Random(3)  # noqa: S311 - reproducible sampling, not secrets
    base = [a for a in data.articles[:among] if len(a.text.split()) >= MIN_SOURCE_WORDS]
    filler = [(a.id, p) for a in data.articles[:300] for p in a.paragraphs]
    headlines = [a.title for a in data.articles[:300] if a.title] or ["Headline"]
    return [rewrite("combined", a, rng, filler, headlines) for a in rng.sample(base, min(count, len(base)))]


def brute_force_ms(queries: Sequence[np.ndarray], seed_sets: Sequence[np.ndarray]) -> list[float]:
    """Milliseconds per query to compute the exact containment against every seed's shingle set."""
    timings = []
    for query in queries:
        started = time.perf_counter()
        for distinct in seed_sets:
            shared = len(np.intersect1d(query, distinct, assume_unique=True))
            _ = shared / max(1, min(len(query), len(distinct)))
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def index_redis_bytes(store: Store) -> int:
    """Redis memory of the duplicate index: the sketch hash and the seed log (exact: SAMPLES 0)."""
    keys = (f"{store.prefix}:seeds:sketch", f"{store.prefix}:seeds:log")
    return sum(int(store.redis.memory_usage(key, samples=0) or 0) for key in keys)


def _best_of_three_ms(analyzers: Analyzers, text: str) -> float:
    article = as_article(text)
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        analyzers.duplicates(article)
        best = min(best, (time.perf_counter() - started) * 1000)
    return best


def measure_duplicates(
    settings: Settings,
    store: Store,
    data: BenchData,
    sizes: Sequence[int],
    *,
    queries: int = 100,
    brute_force_queries: int = 10,
) -> list[Row]:
    sizes = sorted(sizes)
    seeds = seed_corpus(data, sizes[-1])
    texts = query_texts(data, min(sizes[0], len(data.articles)), queries)
    query_sets = [duplicates.fingerprint(text).distinct for text in texts[:brute_force_queries]]
    seed_sets: list[np.ndarray] = []

    def sketch_keeping_set(text: str) -> bytes:
        fingerprint = duplicates.fingerprint(text)
        seed_sets.append(fingerprint.distinct)
        return fingerprint.sketch()

    analyzers = Analyzers(settings, store)
    stored = store.count_seeds()
    if stored:  # the first seeds, stored for the other parts: their sets only
        seed_sets += [duplicates.fingerprint(text).distinct for _, text in seeds[:stored]]
    rows: list[Row] = []
    figures: dict[int, dict[str, float]] = {}
    for size in sizes:
        used_before = int(store.redis.info("memory")["used_memory"])
        started = time.perf_counter()
        store.add_seeds((Seed(i, text) for i, text in seeds[stored:size]), sketch_keeping_set)
        added_ms = (time.perf_counter() - started) * 1000 / max(1, size - stored)
        used_after = int(store.redis.info("memory")["used_memory"])
        added, stored = size - stored, size
        analyzers.duplicates(as_article(texts[0]))  # the worker's index picks up the new seeds (untimed)
        query = spread([_best_of_three_ms(analyzers, text) for text in texts])
        brute = spread(brute_force_ms(query_sets, seed_sets[:size]))
        index_bytes = index_redis_bytes(store) / size
        worker_bytes = analyzers.seeds.index.memory_bytes() / size
        figures[size] = {"query": query["p50"], "brute": brute["p50"], "redis": index_bytes}
        rows += [
            Row("duplicates", f"query, {size:,} seeds", query["p50"], "ms p50",
                f"p95 {query['p95']} ms; {query['count']} rewritten articles, best of 3 each",
                extra=query),
            Row("duplicates", f"brute force, {size:,} seeds", brute["p50"], "ms p50",
                f"{brute['p50'] / query['p50']:.1f}x the query; exact shingle-set containment against "
                f"every seed, {brute['count']} queries", extra=brute),
            Row("duplicates", f"Redis for the index, {size:,} seeds", round(index_bytes), "B/seed",
                f"sketch hash + seed log (MEMORY USAGE); the worker's in-memory index "
                f"{worker_bytes:,.0f} B/seed"),
        ]  # fmt: skip
        if added:  # (the smallest corpus may have been stored for the other parts already)
            rows.append(
                Row(
                    "duplicates",
                    f"add a seed, to {size:,}",
                    round(added_ms, 3),
                    "ms/seed",
                    f"{added:,} added in bulk (sketch + Redis); Redis used_memory +"
                    f"{(used_after - used_before) / max(1, added):,.0f} B/seed with the text",
                )
            )
    smallest, largest = figures[sizes[0]], figures[sizes[-1]]
    growth = largest["query"] / smallest["query"]
    speedup = round(largest["brute"] / largest["query"], 2)
    rows += [
        Row("duplicates", f"query growth, {sizes[0]:,} -> {sizes[-1]:,} seeds", round(growth, 2), "x",
            f"{smallest['query']} -> {largest['query']} ms p50", f"<= {GROWTH_TARGET:.0f}x",
            growth <= GROWTH_TARGET),
        Row("duplicates", f"speed-up over brute force, {sizes[-1]:,} seeds", speedup, "x",
            f"{largest['brute']} / {largest['query']} ms", f">= {SPEEDUP_TARGET:.0f}x",
            speedup >= SPEEDUP_TARGET),
        Row("duplicates", f"Redis for the index per seed, {sizes[-1]:,} seeds", round(largest["redis"]), "B",
            "beyond the stored text", f"<= {REDIS_BYTES_TARGET} B", largest["redis"] <= REDIS_BYTES_TARGET),
    ]  # fmt: skip
    rows += _estimate(sizes, figures)
    return rows


def _estimate(sizes: Sequence[int], figures: dict[int, dict[str, float]]) -> list[Row]:
    """1M seeds, extrapolated linearly from the two largest sizes measured (brute force and memory are
    linear in the seeds; the query's growth is assumed to continue at its last measured slope)."""
    if len(sizes) < 2 or sizes[-1] >= ESTIMATE_SIZE:
        return []
    low, high = sizes[-2], sizes[-1]
    slope = (figures[high]["query"] - figures[low]["query"]) / (high - low)
    query = max(figures[high]["query"], figures[high]["query"] + slope * (ESTIMATE_SIZE - high))
    brute = figures[high]["brute"] * ESTIMATE_SIZE / high
    redis_mb = figures[high]["redis"] * ESTIMATE_SIZE / 2**20
    note = f"estimate: extrapolated from {low:,} and {high:,}, not measured"
    return [
        Row("duplicates", "query, 1,000,000 seeds", round(query, 2), "ms p50", note),
        Row("duplicates", "brute force, 1,000,000 seeds", round(brute), "ms p50", note),
        Row("duplicates", "Redis for the index, 1,000,000 seeds", round(redis_mb), "MiB", note),
    ]
