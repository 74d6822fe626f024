"""The shipped sentence-level stance model: loading, output shape and calibration, target marking, and
its labels on hand-written unambiguous sentences; and the NewsMTSC evaluation on a file written here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from newsdesk.evaluation.stance import evaluate_stance, expected_calibration_error, macro_f1, read_newsmtsc
from workers.analysis.stance import analyse_stance
from workers.analysis.stance_model import (
    LABELS,
    OnnxStanceModel,
    TargetedSentence,
    encode,
)


@pytest.fixture(scope="module")
def model() -> OnnxStanceModel:
    return OnnxStanceModel.default()


def targeted(text: str, mention: str) -> TargetedSentence:
    start = text.index(mention)
    return TargetedSentence(text=text, start=start, end=start + len(mention))


# Written for these tests (not taken from any data set): each says plainly how it treats the mention.
HAND_WRITTEN = [
    (
        "Washington praised the ceasefire deal as a courageous step toward lasting peace.",
        "Washington",
        "positive",
    ),
    (
        "The Kremlin's brutal crackdown on peaceful protesters drew condemnation from around the world.",
        "Kremlin",
        "negative",
    ),
    ("The UN Security Council met on Tuesday.", "UN Security Council", "neutral"),
    ("Critics accused Russia of lying about its role in the deadly attack.", "Russia", "negative"),
    (
        "Aid workers thanked the United Nations for its generous and swift help after the flood.",
        "United Nations",
        "positive",
    ),
    ("The US delegation arrived in Geneva on Monday evening.", "US", "neutral"),
    (
        "Moscow was condemned for the illegal annexation, a shameful breach of international law.",
        "Moscow",
        "negative",
    ),
    ("Refugees praised the UN for saving thousands of lives.", "UN", "positive"),
    ("Russia won praise from both sides for brokering the successful peace talks.", "Russia", "positive"),
    (
        "Analysts said the White House had bungled the response, leaving the country humiliated.",
        "White House",
        "negative",
    ),
    ("The General Assembly will vote on the resolution next week.", "General Assembly", "neutral"),
]


def test_loads_with_version_and_meta(model: OnnxStanceModel) -> None:
    assert model.version
    assert tuple(model.meta["labels"]) == LABELS
    assert model.temperature > 0
    assert OnnxStanceModel.default() is model  # cached: one session per process


def test_probabilities_have_shape_and_sum_to_one(model: OnnxStanceModel) -> None:
    items = [targeted(text, mention) for text, mention, _ in HAND_WRITTEN]
    probabilities = model.predict(items)
    assert probabilities.shape == (len(items), 3)
    assert probabilities.dtype == np.float64
    assert np.all(probabilities >= 0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-9)


def test_empty_batch(model: OnnxStanceModel) -> None:
    assert model.predict([]).shape == (0, 3)


def test_batching_keeps_order_and_labels(model: OnnxStanceModel) -> None:
    # Rows are sorted by length and padded per batch, then put back in input order. int8 dynamic
    # quantisation scales activations per batch, so probabilities move slightly with the company a
    # sentence keeps (measured: at most ~0.03); the labels must not.
    items = [targeted(text, mention) for text, mention, _ in HAND_WRITTEN]
    together = model.predict(items)
    alone = np.vstack([model.predict([item]) for item in items])
    reversed_ = model.predict(items[::-1])[::-1]
    np.testing.assert_allclose(together, alone, atol=0.05)
    np.testing.assert_allclose(together, reversed_, atol=1e-6)
    assert (together.argmax(axis=1) == alone.argmax(axis=1)).all()


@pytest.mark.parametrize(("text", "mention", "expected"), HAND_WRITTEN)
def test_hand_written_sentences(model: OnnxStanceModel, text: str, mention: str, expected: str) -> None:
    probabilities = model.predict([targeted(text, mention)])[0]
    assert LABELS[int(probabilities.argmax())] == expected, dict(
        zip(LABELS, probabilities.round(3), strict=True)
    )


def test_the_target_decides_the_label(model: OnnxStanceModel) -> None:
    # One sentence, two targets with opposite treatment: the marked mention, not the sentence, counts.
    text = "Russia thanked the UN for its help, while the protesters denounced Russia as a brutal aggressor."
    first = TargetedSentence(text, text.index("UN"), text.index("UN") + 2)
    second_start = text.rindex("Russia")
    second = TargetedSentence(text, second_start, second_start + len("Russia"))
    p_un, p_russia = model.predict([first, second])
    assert LABELS[int(p_un.argmax())] == "positive"
    assert LABELS[int(p_russia.argmax())] == "negative"


def test_marking_keeps_the_target_inside_a_long_sentence(model: OnnxStanceModel) -> None:
    filler = " ".join(["The committee discussed the budget at length."] * 40)
    text = f"{filler} Then the United Nations was praised. {filler}"
    item = targeted(text, "United Nations")
    (row,) = encode(model.tokenizer, [item], model.spec)
    assert len(row.ids) == model.spec.max_length
    assert row.ids[0] == model.spec.cls_id
    assert row.ids[-1] == model.spec.sep_id
    assert row.ids[row.target_start] == model.spec.open_id
    assert row.ids[row.target_end - 1] == model.spec.close_id
    inside = model.tokenizer.decode(row.ids[row.target_start + 1 : row.target_end - 1])
    assert inside == "united nations"
    # The window is centred on the target, so context is kept on both sides.
    assert 30 < row.target_start < model.spec.max_length - 30


def test_marking_a_mention_at_the_edges(model: OnnxStanceModel) -> None:
    for text, mention in [("Russia", "Russia"), ("Talks ended, said Russia", "Russia")]:
        (row,) = encode(model.tokenizer, [targeted(text, mention)], model.spec)
        assert row.ids[row.target_start] == model.spec.open_id
        assert row.ids[row.target_end - 1] == model.spec.close_id
        assert row.target_end - row.target_start == 3  # open, "russia", close


class _Oracle:
    """A stand-in model that puts `confidence` on each item's gold label."""

    version = "oracle"

    def __init__(self, gold: dict[TargetedSentence, int], confidence: float) -> None:
        self.gold = gold
        self.confidence = confidence

    def predict(self, items: Sequence[TargetedSentence]) -> npt.NDArray[np.float64]:
        rest = (1 - self.confidence) / 2
        out = np.full((len(items), 3), rest)
        out[np.arange(len(items)), [self.gold[item] for item in items]] = self.confidence
        return out


def _write_newsmtsc(path: Path) -> list[int]:
    """A tiny NewsMTSC-format file (hand-written sentences); returns the gold label indices in order."""
    lines = [
        (
            "Washington praised the ceasefire deal as a courageous step toward lasting peace.",
            [("Washington", 6.0)],
        ),
        ("Russia thanked the UN for its help, while protesters denounced Russia.", [("UN", 6.0)]),
        ("The UN Security Council met on Tuesday.", [("UN Security Council", 4.0)]),
        ("Critics accused Russia of lying about its role in the deadly attack.", [("Russia", 2.0)]),
    ]
    gold = []
    with path.open("w", encoding="utf-8") as f:
        for i, (text, targets) in enumerate(lines):
            # Two source articles of two sentences each (the first three fields of primary_gid).
            record = {"primary_gid": f"test_a_{i // 2}_{i}_x", "sentence_normalized": text, "targets": []}
            for mention, polarity in targets:
                start = text.index(mention)
                record["targets"].append(
                    {"from": start, "to": start + len(mention), "mention": mention, "polarity": polarity}
                )
                gold.append({2.0: 0, 4.0: 1, 6.0: 2}[polarity])
            f.write(json.dumps(record) + "\n")
    return gold


def test_evaluate_stance_scores_a_file(tmp_path: Path, model: OnnxStanceModel) -> None:
    path = tmp_path / "tiny.jsonl"
    gold = _write_newsmtsc(path)

    items, labels, _ = read_newsmtsc(path)
    assert labels.tolist() == gold
    perfect = evaluate_stance(_Oracle(dict(zip(items, gold, strict=True)), confidence=0.9), path)
    assert perfect["n"] == 4
    assert perfect["macro_f1"] == pytest.approx(100.0)
    assert perfect["accuracy"] == pytest.approx(100.0)
    assert perfect["ece"] == pytest.approx(0.1)  # always right, 0.9 confident

    real = evaluate_stance(model, path)
    assert real["n"] == 4
    assert real["accuracy"] == pytest.approx(100.0)
    assert 0.0 <= real["ece"] < 0.5


def test_evaluate_stance_asks_one_article_at_a_time(tmp_path: Path) -> None:
    # As a worker asks for one article's sentences: the int8 model's batches set its activation scales.
    path = tmp_path / "tiny.jsonl"
    gold = _write_newsmtsc(path)
    items, _, articles = read_newsmtsc(path)
    assert articles == ["test_a_0", "test_a_0", "test_a_1", "test_a_1"]
    oracle = _Oracle(dict(zip(items, gold, strict=True)), confidence=0.9)
    asked: list[list[str]] = []
    original = oracle.predict

    def recording(batch: Sequence[TargetedSentence]) -> npt.NDArray[np.float64]:
        asked.append([item.text for item in batch])
        return original(batch)

    oracle.predict = recording  # type: ignore[method-assign]
    assert evaluate_stance(oracle, path)["accuracy"] == pytest.approx(100.0)
    assert asked == [[items[0].text, items[1].text], [items[2].text, items[3].text]]


def test_evaluate_stance_missing_file(tmp_path: Path, model: OnnxStanceModel) -> None:
    with pytest.raises(FileNotFoundError, match="not shipped"):
        evaluate_stance(model, tmp_path / "absent.jsonl")


def test_metrics_by_hand() -> None:
    gold = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    # F1 per class: neg 2*1/(2+1+1)=0.5, neu 2*2/(4+1+0)=0.8, pos 2*1/(2+0+1)=2/3.
    assert macro_f1(gold, pred) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    probabilities = np.array([[0.6, 0.2, 0.2], [0.3, 0.7, 0.0]])
    # Bin (0.533, 0.6]: right at 0.6 -> |1-0.6|; bin (0.667, 0.733]: wrong at 0.7 -> |0-0.7|; weights 1/2.
    assert expected_calibration_error(probabilities, np.array([0, 0])) == pytest.approx((0.4 + 0.7) / 2)


# Hand-made articles whose stance toward each state or institution is plain, reached through aliases.
def test_article_stance_toward_states_and_institutions(model: OnnxStanceModel) -> None:
    text = (
        "The Kremlin launched a brutal and illegal assault on a sleeping city, killing dozens of civilians. "
        "Putin's regime lied again about the massacre. The United Nations sent urgently needed food and "
        "medicine, and refugees praised the UN for saving thousands of lives."
    )
    report = analyse_stance(text, model).targets
    assert report["russia"].label == "negative"
    assert report["russia"].mentions == 2
    assert report["un"].label == "positive"
    assert report["un"].mentions == 2
    assert report["us"].label == "not_mentioned"
    praised = "Washington won praise for brokering the successful peace deal."
    assert analyse_stance(praised, model).targets["us"].label == "positive"


def test_a_state_named_as_a_place_or_nationality_is_neutral(model: OnnxStanceModel) -> None:
    text = (
        "Sales of cars in Russia rose by five percent last year. A US rapper played in Berlin on Friday. "
        "The talks will take place at the United Nations headquarters in New York next week."
    )
    report = analyse_stance(text, model).targets
    assert {key: report[key].label for key in ("us", "russia", "un")} == dict.fromkeys(
        ("us", "russia", "un"), "neutral"
    )


def test_evidence_names_the_holder_of_quoted_or_attributed_sentiment(model: OnnxStanceModel) -> None:
    text = (
        "North Korea's Foreign Ministry condemned the UN Security Council's unjust and hostile sanctions "
        'as a shameful act of aggression. "The United States is lying and stealing," said Kim Yo Jong.'
    )
    report = analyse_stance(text, model).targets
    for key, holder in (("un", "North Korea's Foreign Ministry"), ("us", "Kim Yo Jong")):
        assert report[key].label == "negative"
        (evidence,) = report[key].evidence
        assert evidence.holder is not None
        assert evidence.holder.text == holder
        assert text[evidence.holder.start : evidence.holder.end] == holder
