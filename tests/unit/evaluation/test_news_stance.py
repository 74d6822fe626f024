"""Stance on hand-labelled real-news sentences: the label file as shipped, and the sets rebuilt from a
corpus file written here (the real corpus is never needed)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from newsdesk.evaluation.news_stance import (
    SPLITS,
    build_sets,
    evaluate_news_stance,
    sentence_sha1,
    shipped_labels,
)
from workers.analysis.stance import LABELS, TargetedSentence, find_mentions
from workers.analysis.text import prepare


def test_the_shipped_label_file_is_well_formed() -> None:
    rows = shipped_labels()
    assert len(rows) == 639
    for row in rows:
        assert row["split"] in SPLITS
        assert row["target"] in {"us", "russia", "un"}
        assert row["annotator_1"] in LABELS
        assert row["annotator_2"] in LABELS
        assert 0 <= int(row["start"]) < int(row["end"])
        assert len(row["sentence_sha1"]) == 40
    assert len({(r["sentence_sha1"], r["target"]) for r in rows}) == len(rows)
    agreed = [r for r in rows if r["annotator_1"] == r["annotator_2"]]
    assert {r["split"] for r in agreed} == set(SPLITS)


ARTICLES = [
    {
        "id": "art-1",
        "text": "Sales of the new phone in Russia rose sharply. Critics accused Russia of lying again.",
    },
    {"id": "art-2", "text": "The UN Security Council met on Tuesday. Nothing else happened."},
    {"id": "art-3", "text": "Talks in Moscow with the Kremlin went badly, Russia said on Friday."},
]


def _row(
    article: dict[str, str], sentence_index: int, alias: str, split: str, labels: tuple[str, str]
) -> dict[str, str]:
    sentence = prepare(article["text"]).sentences[sentence_index].text
    mention = next(m for m in find_mentions(sentence) if m.text == alias)
    return {
        "article_id": article["id"],
        "sentence_sha1": sentence_sha1(sentence),
        "start": str(mention.start),
        "end": str(mention.end),
        "target": mention.target,
        "split": split,
        "annotator_1": labels[0],
        "annotator_2": labels[1],
    }


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "news_corpus.jsonl"
    path.write_text("".join(json.dumps(a) + "\n" for a in ARTICLES), encoding="utf-8")
    return path


def test_sets_are_rebuilt_from_the_corpus_with_agreed_labels_only(corpus: Path) -> None:
    rows = [
        _row(ARTICLES[0], 0, "Russia", "tune", ("neutral", "neutral")),
        _row(ARTICLES[0], 1, "Russia", "test", ("negative", "negative")),
        _row(ARTICLES[1], 0, "UN Security Council", "test", ("neutral", "positive")),  # disagreement
        {
            **_row(ARTICLES[1], 0, "UN Security Council", "tune", ("neutral", "neutral")),
            "sentence_sha1": "0" * 40,
        },
    ]
    sets = build_sets(corpus, rows)

    tune_items, tune_gold, tune_articles, tune_missing = sets["tune"]
    assert [(i.text, i.text[i.start : i.end]) for i in tune_items] == [
        ("Sales of the new phone in Russia rose sharply.", "Russia")
    ]
    assert tune_gold.tolist() == [LABELS.index("neutral")]
    assert tune_missing == 1  # its sentence is not in the corpus as split today
    assert len(tune_articles) == len(tune_items)

    test_items, test_gold, _, test_missing = sets["test"]
    assert [i.text for i in test_items] == ["Critics accused Russia of lying again."]
    assert test_gold.tolist() == [LABELS.index("negative")]
    assert test_missing == 0


def test_a_row_is_judged_by_the_mention_the_worker_judges_its_sentence_by(corpus: Path) -> None:
    # Labelled on "Moscow", a mention the rules rank below the state's own name; and a row whose span the
    # rules no longer read as a mention of its target (as "<UN.AS>", a ticker, once was).
    moved = _row(ARTICLES[2], 0, "Moscow", "tune", ("negative", "negative"))
    gone = {**_row(ARTICLES[2], 0, "Russia", "test", ("neutral", "neutral")), "target": "un"}
    sets = build_sets(corpus, [moved, gone])
    items, _, _, missing = sets["tune"]
    assert [i.text[i.start : i.end] for i in items] == ["Russia"]
    assert missing == 0
    assert sets["test"][0] == []
    assert sets["test"][3] == 1


class _AlwaysNeutral:
    version = "always-neutral"

    def predict(self, items: Sequence[TargetedSentence]) -> npt.NDArray[np.float64]:
        return np.tile([0.1, 0.8, 0.1], (len(items), 1))


def test_evaluation_scores_each_split_it_finds(corpus: Path) -> None:
    rows = [
        _row(ARTICLES[0], 0, "Russia", "tune", ("neutral", "neutral")),
        _row(ARTICLES[1], 0, "UN Security Council", "tune", ("neutral", "neutral")),
        _row(ARTICLES[0], 1, "Russia", "test", ("negative", "negative")),
    ]
    result = evaluate_news_stance(_AlwaysNeutral(), corpus, rows)
    assert result["news_corpus_tune"]["n"] == 2
    assert result["news_corpus_tune"]["accuracy"] == pytest.approx(100.0)
    assert result["news_corpus_tune"]["ece"] == pytest.approx(0.2)  # always right, 0.8 confident
    assert result["news_corpus_test"]["n"] == 1
    assert result["news_corpus_test"]["accuracy"] == pytest.approx(0.0)
    assert result["news_corpus_test"]["missing"] == 0
    # The shipped labels name articles this corpus does not have: nothing is scored, nothing invented.
    assert evaluate_news_stance(_AlwaysNeutral(), corpus) == {}
