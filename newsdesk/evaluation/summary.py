"""Summary quality: ROUGE-1/2/L of the extractive summaries against human-written references."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from workers.analysis.summary import summarize

Summarizer = Callable[[str], Sequence[str]]


def service_summarizer(text: str) -> list[str]:
    """The sentences the workers would return, with the default options."""
    return [sentence.text for sentence in summarize(text).sentences]


def lead_summarizer(count: int = 3) -> Summarizer:
    """The Lead-N baseline over the same cleaned sentences, for comparison in the same run."""
    from workers.analysis.text import prepare  # noqa: PLC0415

    def lead(text: str) -> list[str]:
        return [sentence.text for sentence in prepare(text).body_sentences[:count]]

    return lead


def read_texts(path: Path, limit: int | None = None) -> list[str]:
    """The article texts of a {"text", "reference"} JSONL file, the first `limit` of them."""
    texts: list[str] = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                texts.append(json.loads(line)["text"])
            if limit is not None and len(texts) == limit:
                break
    return texts


def evaluate_summary(path: Path, summarizer: Summarizer = service_summarizer) -> dict[str, Any]:
    """ROUGE F1 (percent, Porter stemming; rougeL is the summary-level rougeLsum) on a JSONL file of
    {"text", "reference"}, and the median milliseconds per article."""
    from rouge_score import rouge_scorer  # noqa: PLC0415 - an evaluation-only dependency

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeLsum"], use_stemmer=True)
    scores: dict[str, list[float]] = {"rouge1": [], "rouge2": [], "rougeL": []}
    timings: list[float] = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            record = json.loads(line)
            reference = record["reference"]
            if not isinstance(reference, str):
                reference = "\n".join(reference)
            started = time.perf_counter()
            sentences = summarizer(record["text"])
            timings.append((time.perf_counter() - started) * 1000)
            # rougeLsum splits on newlines; references are one highlight per sentence.
            result = scorer.score(reference.replace(" . ", " .\n"), "\n".join(sentences))
            scores["rouge1"].append(result["rouge1"].fmeasure)
            scores["rouge2"].append(result["rouge2"].fmeasure)
            scores["rougeL"].append(result["rougeLsum"].fmeasure)
    n = len(timings)
    return {
        **{
            name: round(100 * statistics.fmean(values), 2) if values else None
            for name, values in scores.items()
        },
        "n": n,
        "ms_per_article": round(statistics.median(timings), 2) if timings else None,
    }
