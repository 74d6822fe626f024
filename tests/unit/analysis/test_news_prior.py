"""The label-prior estimate behind the shipped real-news prior (training/stance/news_prior.py)."""

from __future__ import annotations

import numpy as np

from training.stance.news_prior import em_prior


def test_em_recovers_a_shifted_prior_from_calibrated_posteriors() -> None:
    # Three well-separated classes; the posteriors are exact for the training prior, as a calibrated
    # model's are. Drawn with a different prior, EM must find that prior from the posteriors alone.
    rng = np.random.default_rng(0)
    means = np.array([-2.0, 0.0, 2.0])
    train_prior = np.array([0.4, 0.35, 0.25])
    true_prior = np.array([0.1, 0.8, 0.1])
    labels = rng.choice(3, size=20_000, p=true_prior)
    x = rng.normal(means[labels], 1.0)
    likelihood = np.exp(-0.5 * (x[:, None] - means[None, :]) ** 2)
    posteriors = likelihood * train_prior
    posteriors /= posteriors.sum(axis=1, keepdims=True)

    assert np.abs(posteriors.mean(axis=0) - true_prior).max() > 0.05  # the naive average is off
    np.testing.assert_allclose(em_prior(posteriors, train_prior), true_prior, atol=0.015)
