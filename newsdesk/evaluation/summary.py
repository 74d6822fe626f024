"""Summary quality: ROUGE-1/2/L of the extractive summaries against human-written references."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import blingfire

from newsdesk.jsonl import RecordError, read_records, required
from workers.analysis.summary import DEFAULT_SENTENCES, summarize

Summarizer = Callable[[str], Sequence[str]]


def service_summarizer(sentences: int = DEFAULT_SENTENCES) -> Summarizer:
    """The sentences the workers return for an article sent without options (NEWSDESK_SUMMARY_SENTENCES)."""

    def service(text: str) -> list[str]:
        return [sentence.text for sentence in summarize(text, sentences=sentences).sentences]

    return service


def lead_summarizer(count: int = 3) -> Summarizer:
    """The Lead-N baseline over the same cleaned sentences, for comparison in the same run."""
    from workers.analysis.text import prepare  # noqa: PLC0415

    def lead(text: str) -> list[str]:
        return [sentence.text for sentence in prepare(text).body_sentences[:count]]

    return lead


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """(text, reference) of each line; a reference given as a list of sentences is one per line."""
    pairs = []
    for number, record in read_records(path):
        where = f"{path}:{number}"
        text = required(record, "text", str, where)
        reference = required(record, "reference", (str, list), where)
        if isinstance(reference, list):
            if not all(isinstance(sentence, str) for sentence in reference):
                raise RecordError(f'{where}: field "reference" must be a string or a list of strings')
            reference = "\n".join(reference)
        pairs.append((text, reference))
    return pairs


def _sentence_lines(reference: str) -> str:
    """The reference one sentence a line, as rougeLsum reads it (summary-level LCS: it splits on
    newlines). CNN/DM highlights are tokenised text ("... sanctions . The ..."); other references (BBC's)
    are plain prose, split by the same splitter as the candidates' sentences."""
    lines = reference.replace(" . ", " .\n").splitlines()
    return "\n".join(s for line in lines for s in blingfire.text_to_sentences(line).splitlines() if s.strip())


def evaluate_summary(
    pairs: Sequence[tuple[str, str]], summarizer: Summarizer, *, held_out_from: int = 0
) -> dict[str, Any]:
    """ROUGE F1 (percent, Porter stemming; rougeL is the summary-level rougeLsum) of (text, reference)
    pairs (read_pairs), and the median milliseconds per article. With `held_out_from`, the same figures
    for the articles from that index on (0-based) under "held_out", from the same summaries."""
    from rouge_score import rouge_scorer  # noqa: PLC0415 - an evaluation-only dependency

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeLsum"], use_stemmer=True)
    rows: list[dict[str, float]] = []
    for text, reference in pairs:
        started = time.perf_counter()
        sentences = summarizer(text)
        elapsed = (time.perf_counter() - started) * 1000
        result = scorer.score(_sentence_lines(reference), "\n".join(sentences))
        rows.append(
            {
                "rouge1": result["rouge1"].fmeasure,
                "rouge2": result["rouge2"].fmeasure,
                "rougeL": result["rougeLsum"].fmeasure,
                "ms": elapsed,
            }
        )
    figures = _aggregate(rows)
    if 0 < held_out_from < len(rows):
        figures["held_out"] = _aggregate(rows[held_out_from:])
    return figures


def _aggregate(rows: Sequence[dict[str, float]]) -> dict[str, Any]:
    return {
        **{
            name: round(100 * statistics.fmean(r[name] for r in rows), 2)
            for name in ("rouge1", "rouge2", "rougeL")
        },
        "n": len(rows),
        "ms_per_article": round(statistics.median(r["ms"] for r in rows), 2),
    }
