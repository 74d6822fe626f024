"""The ECE and its consistency-resampling check, on probabilities built here."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from newsdesk.evaluation.stance import calibration_check, expected_calibration_error


def _confident(confidence: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Rows whose first class has `confidence` and the rest share what is left."""
    rest = (1.0 - confidence) / 2
    return np.stack([confidence, rest, rest], axis=1)


def _labels(correct: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    return np.where(correct, 0, 1).astype(np.int64)


def test_a_calibrated_model_is_not_flagged() -> None:
    rng = np.random.default_rng(7)
    confidence = rng.uniform(0.4, 0.95, size=400)
    gold = _labels(rng.random(400) < confidence)  # right exactly as often as it says
    probabilities = _confident(confidence)

    floor, p = calibration_check(probabilities, gold)

    measured = expected_calibration_error(probabilities, gold)
    assert measured > 0.01  # sampling alone leaves a gap on a few hundred examples ...
    assert floor == pytest.approx(measured, abs=0.02)  # ... the size the check expects
    assert p > 0.05


def test_an_overconfident_model_is_flagged() -> None:
    confidence = np.full(400, 0.9)
    gold = _labels(np.arange(400) % 2 == 0)  # right half the time at 0.9

    floor, p = calibration_check(_confident(confidence), gold)

    assert expected_calibration_error(_confident(confidence), gold) == pytest.approx(0.4)
    assert floor < 0.05
    assert p == 0.0


def test_the_floor_falls_with_more_examples() -> None:
    floors = []
    for n in (100, 1600):
        confidence = np.linspace(0.4, 0.95, n)
        floor, _ = calibration_check(_confident(confidence), np.zeros(n, dtype=np.int64))
        floors.append(floor)
    assert floors[1] < floors[0] / 2  # sampling error shrinks as 1/sqrt(n)


def test_the_check_is_the_same_on_every_run() -> None:
    confidence = np.linspace(0.5, 0.9, 50)
    gold = _labels(np.arange(50) % 3 != 0)
    first = calibration_check(_confident(confidence), gold)
    assert calibration_check(_confident(confidence), gold) == first
