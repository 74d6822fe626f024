"""Sentence-level stance evaluation on NewsMTSC-format files: macro-F1, accuracy and calibration error."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from workers.analysis.stance import LABELS, SentenceScorer, TargetedSentence

# NewsMTSC codes polarity on a 1-7 scale collapsed to three values.
POLARITY_TO_LABEL = {2.0: 0, 4.0: 1, 6.0: 2}
ECE_BINS = 15


def read_newsmtsc(path: Path) -> tuple[list[TargetedSentence], npt.NDArray[np.int64]]:
    """Every target of every sentence as one example, with its label index into LABELS."""
    items: list[TargetedSentence] = []
    labels: list[int] = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            record = json.loads(line)
            text = record["sentence_normalized"]
            for target in record["targets"]:
                items.append(TargetedSentence(text=text, start=int(target["from"]), end=int(target["to"])))
                labels.append(POLARITY_TO_LABEL[float(target["polarity"])])
    return items, np.asarray(labels, dtype=np.int64)


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
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin i holds confidences in (edges[i], edges[i+1]]; the first bin also takes an exact 0.
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        in_bin = index == b
        if in_bin.any():
            total += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(total)


def score(probabilities: npt.NDArray[np.floating[Any]], gold: npt.NDArray[np.int64]) -> dict[str, float]:
    """macro_f1 and accuracy in percent, ece as a fraction, n examples."""
    pred = probabilities.argmax(axis=1)
    return {
        "macro_f1": 100.0 * macro_f1(gold, pred),
        "accuracy": 100.0 * float(np.mean(pred == gold)),
        "ece": expected_calibration_error(probabilities, gold),
        "n": len(gold),
    }


def evaluate_stance(model: SentenceScorer, path: Path) -> dict[str, float]:
    """Score `model` on one NewsMTSC-format file (e.g. dev_rw.jsonl).

    Returns {"macro_f1", "accuracy"} in percent, {"ece"} as a fraction (15 bins, max-prob
    confidence) and {"n"}, the number of targets.
    """
    if not path.is_file():
        raise FileNotFoundError(f"NewsMTSC file not found: {path} (the data is not shipped; see shared/data)")
    items, gold = read_newsmtsc(path)
    if not items:
        raise ValueError(f"no targets in {path}")
    probabilities = model.predict(items)
    return score(probabilities, gold)


def evaluate_files(model: SentenceScorer, paths: Sequence[Path]) -> dict[str, dict[str, float]]:
    """evaluate_stance on each file, keyed by the file's stem."""
    return {path.stem: evaluate_stance(model, path) for path in paths}
