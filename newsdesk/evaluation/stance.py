"""Sentence-level stance evaluation on NewsMTSC-format files: macro-F1, accuracy and calibration error."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from newsdesk.evaluation.records import NoExamples
from newsdesk.jsonl import RecordError, read_records, required
from workers.analysis.stance import LABELS, SentenceScorer, TargetedSentence

# NewsMTSC codes polarity on a 1-7 scale collapsed to three values.
POLARITY_TO_LABEL = {2.0: 0, 4.0: 1, 6.0: 2}
ECE_BINS = 15
ECE_DRAWS = 2000
_DRAW_BLOCK = 200


def read_newsmtsc(path: Path) -> tuple[list[TargetedSentence], npt.NDArray[np.int64], list[str]]:
    """Every target of every sentence as one example, with its label index into LABELS and its source
    article (the first three fields of `primary_gid`, as training/stance/train.py splits by).

    A target whose offsets fall outside its sentence, or do not spell its `mention`, is a RecordError:
    scored anyway it would judge some other stretch of the sentence.
    """
    items: list[TargetedSentence] = []
    labels: list[int] = []
    articles: list[str] = []
    for number, record in read_records(path):
        where = f"{path}:{number}"
        text = required(record, "sentence_normalized", str, where)
        article = "_".join(str(record.get("primary_gid", where)).split("_")[:3])
        for target in required(record, "targets", list, where):
            if not isinstance(target, dict):
                raise RecordError(f"{where}: each target must be an object")
            start, end = (required(target, key, int, where) for key in ("from", "to"))
            if not 0 <= start < end <= len(text):
                raise RecordError(
                    f"{where}: target offsets {start}-{end} are outside the sentence ({len(text)} chars)"
                )
            mention = target.get("mention")
            if mention is not None and text[start:end] != mention:
                raise RecordError(
                    f"{where}: the sentence has {text[start:end]!r} at {start}-{end}, not {mention!r}"
                )
            polarity = required(target, "polarity", (int, float), where)
            if float(polarity) not in POLARITY_TO_LABEL:
                raise RecordError(f"{where}: polarity {polarity} is none of 2.0, 4.0, 6.0")
            items.append(TargetedSentence(text=text, start=start, end=end))
            labels.append(POLARITY_TO_LABEL[float(polarity)])
            articles.append(article)
    return items, np.asarray(labels, dtype=np.int64), articles


def predict_by_article(
    model: SentenceScorer, items: Sequence[TargetedSentence], articles: Sequence[str]
) -> npt.NDArray[np.float64]:
    """The model's probabilities for `items`, asked one article at a time, as a worker asks for the
    target sentences of the article it analyses. The int8 model's activation scales are set per batch,
    so a sentence's probabilities move a little with the sentences it is batched with: scoring a whole
    file at once would measure batches no worker makes."""
    out = np.zeros((len(items), len(LABELS)), dtype=np.float64)
    members: dict[str, list[int]] = {}
    for index, article in enumerate(articles):
        members.setdefault(article, []).append(index)
    for indices in members.values():
        out[indices] = model.predict([items[i] for i in indices])
    return out


def macro_f1(gold: npt.NDArray[np.int64], pred: npt.NDArray[np.int64], classes: int = len(LABELS)) -> float:
    """Unweighted mean of the per-class F1 (a class absent from both gold and pred scores 0)."""
    scores = []
    for c in range(classes):
        tp = float(np.sum((pred == c) & (gold == c)))
        fp = float(np.sum((pred == c) & (gold != c)))
        fn = float(np.sum((pred != c) & (gold == c)))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp > 0 else 0.0)
    return float(np.mean(scores))


def expected_calibration_error(
    probabilities: npt.NDArray[np.floating[Any]], gold: npt.NDArray[np.int64], bins: int = ECE_BINS
) -> float:
    """ECE on the max-probability confidence, equal-width bins, as a fraction (0.05 = 5 points)."""
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == gold).astype(np.float64)
    return float(_binned_gaps(confidence, correct[None, :], bins)[0])


def calibration_check(
    probabilities: npt.NDArray[np.floating[Any]],
    gold: npt.NDArray[np.int64],
    bins: int = ECE_BINS,
    draws: int = ECE_DRAWS,
) -> tuple[float, float]:
    """How much ECE a perfectly calibrated model would show here, and whether this one shows more.

    Consistency resampling (Bröcker & Smith 2007): keep the confidences, draw "correct" for each example
    with probability equal to its confidence, and score ECE as above, `draws` times. Returns the mean of
    those ECEs (the floor: on a few hundred examples it is 0.03-0.05, from sampling alone) and the share
    of them at least as large as the measured ECE (a p-value; small means miscalibrated, not unlucky).
    """
    confidence = probabilities.max(axis=1)
    measured = expected_calibration_error(probabilities, gold, bins)
    rng = np.random.default_rng(0)  # the same figures on every run
    eces: list[npt.NDArray[np.float64]] = []
    for start in range(0, draws, _DRAW_BLOCK):  # in blocks: a large file needs no draws x examples array
        size = min(_DRAW_BLOCK, draws - start)
        simulated = (rng.random((size, len(confidence))) < confidence).astype(np.float64)
        eces.append(_binned_gaps(confidence, simulated, bins))
    all_eces = np.concatenate(eces)
    return float(all_eces.mean()), float(np.mean(all_eces >= measured - 1e-12))


def _binned_gaps(
    confidence: npt.NDArray[np.floating[Any]], correct: npt.NDArray[np.float64], bins: int
) -> npt.NDArray[np.float64]:
    """ECE of each row of `correct` (0/1 per example) against the same confidences."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin i holds confidences in (edges[i], edges[i+1]]; the first bin also takes an exact 0.
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    members = np.zeros((len(confidence), bins))
    members[np.arange(len(confidence)), index] = 1.0
    # Per bin |sum(correct) - sum(confidence)| / n is that bin's weight times its gap.
    gaps = np.abs(correct @ members - confidence @ members)
    return np.asarray(gaps.sum(axis=1) / len(confidence), dtype=np.float64)


def score(probabilities: npt.NDArray[np.floating[Any]], gold: npt.NDArray[np.int64]) -> dict[str, float]:
    """macro_f1 and accuracy in percent, ece as a fraction with its calibration_check, n examples."""
    pred = probabilities.argmax(axis=1)
    ece_floor, ece_p = calibration_check(probabilities, gold)
    return {
        "macro_f1": 100.0 * macro_f1(gold, pred),
        "accuracy": 100.0 * float(np.mean(pred == gold)),
        "ece": expected_calibration_error(probabilities, gold),
        "ece_floor": ece_floor,
        "ece_p": ece_p,
        "n": len(gold),
    }


def evaluate_stance(model: SentenceScorer, path: Path) -> dict[str, float]:
    """Score `model` on one NewsMTSC-format file (e.g. dev_rw.jsonl).

    Returns {"macro_f1", "accuracy"} in percent, {"ece"} as a fraction (15 bins, max-prob
    confidence) and {"n"}, the number of targets.
    """
    if not path.is_file():
        raise FileNotFoundError(f"NewsMTSC file not found: {path} (the data is not shipped; see shared/data)")
    items, gold, articles = read_newsmtsc(path)
    if not items:
        raise NoExamples(f"{path}: no targets")
    return score(predict_by_article(model, items, articles), gold)


def evaluate_files(model: SentenceScorer, paths: Sequence[Path]) -> dict[str, dict[str, float]]:
    """evaluate_stance on each file, keyed by the file's stem."""
    return {path.stem: evaluate_stance(model, path) for path in paths}
