"""Stance toward the product's own targets in real news: hand-labelled sentences of the news corpus.

NewsMTSC's targets are mostly people. The product's are states and institutions, which real news names
far more often as a place, a market or a nationality than as an actor ("sales in Russia rose", "a US
rapper"). `data/news_corpus_stance.tsv` labels sentences of `news_corpus/news_corpus.jsonl` that
mention the United States, Russia or the United Nations, without copying any text: each row names the
article, the sentence (the sha1 of its text as `prepare` splits it) and the mention's offsets in it.
Two annotators labelled every row independently (guideline in `data/`); rows they disagree on are
left out. The `tune` split is what the incidental-mention rules were written against, `test` was
scored only once they were (and informed later changes), `check` was drawn and labelled after every
choice was made and scored once.
"""

from __future__ import annotations

import csv
import hashlib
from collections import defaultdict
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt

from newsdesk.evaluation.stance import predict_by_article, score
from newsdesk.jsonl import read_records, required
from workers.analysis.stance import LABELS, SentenceScorer, TargetedSentence, find_mentions, lead_mention
from workers.analysis.text import prepare

LABELS_FILE = "data/news_corpus_stance.tsv"
SPLITS = ("tune", "test", "check")


def read_labels(text: str) -> list[dict[str, str]]:
    """The label rows (comment lines skipped) as dicts keyed by the header."""
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return list(csv.DictReader(lines, delimiter="\t"))


def build_sets(
    corpus: Path, label_rows: list[dict[str, str]]
) -> dict[str, tuple[list[TargetedSentence], npt.NDArray[np.int64], list[str], int]]:
    """Per split: the items, their gold labels, their articles' ids, and how many agreed rows were not
    found in `corpus` (or whose sentence no longer mentions the row's target)."""
    wanted: dict[str, list[dict[str, str]]] = defaultdict(list)
    agreed: dict[str, int] = dict.fromkeys(SPLITS, 0)
    for row in label_rows:
        if row["annotator_1"] == row["annotator_2"]:
            wanted[row["article_id"]].append(row)
            agreed[row["split"]] += 1
    items: dict[str, list[TargetedSentence]] = {split: [] for split in SPLITS}
    gold: dict[str, list[int]] = {split: [] for split in SPLITS}
    articles: dict[str, list[str]] = {split: [] for split in SPLITS}
    for number, article in read_records(corpus):
        rows = wanted.get(required(article, "id", str, f"{corpus}:{number}"))
        if not rows:
            continue
        text = required(article, "text", str, f"{corpus}:{number}")
        sentences = {sentence_sha1(s.text): s.text for s in prepare(text).sentences}
        for row in rows:
            sentence = sentences.get(row["sentence_sha1"])
            if sentence is None:
                continue  # the sentence splitter has changed since the row was labelled
            # Judged as the worker judges the sentence: by its lead mention of the row's target as the
            # mention rules find it today (they may have moved since the row was labelled, or no longer
            # find one: "<UN.AS>" is a ticker; such a row counts as missing).
            own = [m for m in find_mentions(sentence) if m.target == row["target"]]
            if not own:
                continue
            lead = lead_mention(own)
            items[row["split"]].append(TargetedSentence(sentence, lead.start, lead.end))
            gold[row["split"]].append(LABELS.index(row["annotator_1"]))
            articles[row["split"]].append(row["article_id"])
    return {
        split: (
            items[split],
            np.asarray(gold[split], dtype=np.int64),
            articles[split],
            agreed[split] - len(items[split]),
        )
        for split in SPLITS
    }


def shipped_labels() -> list[dict[str, str]]:
    """The label rows of `data/news_corpus_stance.tsv`."""
    return read_labels(resources.files("newsdesk.evaluation").joinpath(LABELS_FILE).read_text("utf-8"))


def evaluate_news_stance(
    scorer: SentenceScorer, corpus: Path, label_rows: list[dict[str, str]] | None = None
) -> dict[str, dict[str, float]]:
    """macro-F1, accuracy, ECE, n and `missing` (agreed rows whose sentence the current splitter no
    longer produces) per split with rows, keyed `news_corpus_<split>`; the shipped labels by default."""
    label_rows = shipped_labels() if label_rows is None else label_rows
    result: dict[str, dict[str, float]] = {}
    for split, (items, gold, articles, missing) in build_sets(corpus, label_rows).items():
        if items:
            probabilities = predict_by_article(scorer, items, articles)
            result[f"news_corpus_{split}"] = {**score(probabilities, gold), "missing": missing}
    return result


def sentence_sha1(text: str) -> str:
    """The key of a sentence in the label file."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()  # noqa: S324 - a content key, not security
