"""Incidental mentions: a state named only as a place, a market, an origin or inside another name.

The sentences are written for these tests (none comes from a data set). The model-backed tests check
the product's judgement end to end: the shipped model alone gets several of them wrong.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.analysis.incidental import incidental_use
from workers.analysis.stance import (
    LABELS,
    LabelPrior,
    LexiconScorer,
    TargetedSentence,
    TargetMentionScorer,
    analyse_stance,
    find_mentions,
)
from workers.pipeline import load_scorer


def use_of(text: str, alias: str) -> str | None:
    """incidental_use of the first mention of `alias`, with its kind from the target list."""
    mention = next(m for m in find_mentions(text) if m.text == alias)
    return incidental_use(text, mention.start, mention.end, mention.kind)


INCIDENTAL = [
    ("Sales of the new phone in Russia rose sharply, delighting investors.", "Russia", "place"),
    ("The talks in Washington ended without a deal on fishing quotas.", "Washington", "place"),
    ("She moved back to the US after ten happy years in Paris.", "US", "place"),
    ("US oil production fell for a third month.", "US", "market"),
    ("The weak U.S. dollar made European holidays expensive.", "U.S.", "market"),
    ("Russia's stock market had its best day in a decade.", "Russia", "market"),
    ("The US' recent economic performance has been mixed.", "US", "market"),
    ("Most US insurers have little exposure to the storm.", "US", "market"),
    ("A US rapper was arrested after a violent brawl outside a club.", "US", "origin"),
    ("A brilliant young American scientist won the prize.", "American", "origin"),
    ("Russian companies reported record losses this year.", "Russian", "origin"),
    ("Fifth seed Carla Diaz beat American Jo Smith in straight sets.", "American", "origin"),
    ("And the American remains confident of a medal in Paris.", "American", "origin"),
    ("Russia's Olga Petrova won the 200m in a season's best time.", "Russia", "origin"),
    ("Shares of American Widget Co fell 4 pct on the news.", "American", "name"),
    ("The union, United Steelworkers of America, rejected the offer.", "America", "name"),
    ("Fans were thrilled when the champion won the US Open for a third time.", "US", "name"),
]

ACTOR = [
    ("Russia invaded its neighbour in a brutal, unprovoked attack.", "Russia"),
    ("US forces attacked the platforms late on Sunday.", "US"),
    ("Critics attacked the U.S. trade policy as reckless.", "U.S."),
    ("Some members dislike Russia's energy price subsidies.", "Russia"),
    ("Investors lost confidence in Russia after the default.", "Russia"),
    ("The UN Security Council condemned the attack.", "UN Security Council"),
    ("Russian President Vladimir Putin rejected the plan.", "Russian"),
    ('"Any U.S. Military aggression will be met with force," the spokesman said.', "U.S."),
    ("The U.S. National Institute of Health announced a breakthrough.", "U.S."),
    ("Mr Putin praised the deal.", "Putin"),
    ("Washington warned Moscow against further escalation.", "Washington"),
    ("Russia's Foreign Ministry condemned the strike.", "Russia"),
    ("The UN's Economic Commission for Africa criticised the plan.", "UN"),
    ("Russia's State Duma Committee backed the bill.", "Russia"),
]


@pytest.mark.parametrize(("text", "alias", "expected"), INCIDENTAL)
def test_incidental_mentions_are_recognised(text: str, alias: str, expected: str) -> None:
    assert use_of(text, alias) == expected


@pytest.mark.parametrize(("text", "alias"), ACTOR)
def test_mentions_of_an_actor_are_left_to_the_model(text: str, alias: str) -> None:
    assert use_of(text, alias) is None


def test_a_title_case_headline_is_not_read_as_a_name() -> None:
    # Every word is capitalised, so "Slams Russia" is no company name; only a preposition counts.
    assert use_of("Trump Slams Russia Over Election Hacking Claims", "Russia") is None
    assert use_of("Record Heat Wave Hits Cities Across Russia", "Russia") == "place"


def test_a_dotted_ticker_is_not_a_mention() -> None:
    mentions = find_mentions("Unilever <UN.AS> rose 2 pct while the UN met.")
    text = "Unilever <UN.AS> rose 2 pct while the UN met."
    assert [(m.text, m.start) for m in mentions] == [("UN", text.rindex("UN"))]


def test_the_wrapper_leans_incidental_mentions_to_neutral_and_leaves_others() -> None:
    scorer = TargetMentionScorer(LexiconScorer())
    place = "Sales of the new phone in Russia rose sharply, delighting investors."
    actor = "Russia invaded its neighbour in a brutal, unprovoked attack."
    person = "Critics praised Smith for his courage."  # not a target alias: passes through
    items = [
        TargetedSentence(place, place.index("Russia"), place.index("Russia") + 6),
        TargetedSentence(actor, 0, 6),
        TargetedSentence(person, person.index("Smith"), person.index("Smith") + 5),
    ]
    inner = LexiconScorer().predict(items)
    wrapped = scorer.predict(items)
    shrink = scorer.shrink
    np.testing.assert_allclose(wrapped[0], (1 - shrink) * inner[0] + shrink * np.array([0.0, 1.0, 0.0]))
    np.testing.assert_allclose(wrapped[1:], inner[1:])
    np.testing.assert_allclose(wrapped.sum(axis=1), 1.0)
    assert scorer.version == f"{LexiconScorer.version}+targets-1"


def test_the_wrapper_reweights_other_state_mentions_to_the_news_prior() -> None:
    prior = LabelPrior(train=(0.4, 0.35, 0.25), news=(0.2, 0.6, 0.2))
    scorer = TargetMentionScorer(LexiconScorer(), prior=prior)
    actor = "Critics accused Russia of lying about its role in the deadly attack."
    leader = "Critics accused Putin of lying about his role in the deadly attack."
    place = "Sales of the new phone in Russia rose sharply, delighting investors."
    person = "Critics accused Smith of lying about his role in the deadly attack."
    items = [
        TargetedSentence(actor, actor.index("Russia"), actor.index("Russia") + 6),
        TargetedSentence(leader, leader.index("Putin"), leader.index("Putin") + 5),
        TargetedSentence(place, place.index("Russia"), place.index("Russia") + 6),
        TargetedSentence(person, person.index("Smith"), person.index("Smith") + 5),
    ]
    inner = LexiconScorer().predict(items)
    out = scorer.predict(items)
    shifted = inner[0] * np.array([0.5, 0.6 / 0.35, 0.8])
    np.testing.assert_allclose(out[0], shifted / shifted.sum())
    np.testing.assert_allclose(out[1], inner[1])  # a leader: the scorer learnt people, no re-weighting
    np.testing.assert_allclose(out[2], 0.1 * inner[2] + 0.9 * np.array([0.0, 1.0, 0.0]))  # incidental
    np.testing.assert_allclose(out[3], inner[3])  # not a target
    assert out[0][1] > inner[0][1]


def test_evidence_says_how_a_mention_is_incidental() -> None:
    report = analyse_stance("A US rapper was arrested after a violent brawl outside a club.", LexiconScorer())
    (evidence,) = report.targets["us"].evidence
    assert [(m.text, m.kind, m.incidental) for m in evidence.mentions] == [("US", "name", "origin")]


@pytest.fixture(scope="module")
def product_scorer() -> TargetMentionScorer:
    scorer = load_scorer("model")
    assert isinstance(scorer, TargetMentionScorer)
    assert scorer.prior is not None  # the shipped model carries the real-news prior in its meta.json
    return scorer


# The model alone calls the first three positive or negative toward the state (see the stance README's
# "known weakness"); the product must not.
PRODUCT_CASES = [
    ("Sales of the new phone in Russia rose sharply, delighting investors.", "russia", "neutral"),
    ("A US rapper was arrested after a violent brawl outside a club.", "us", "neutral"),
    ("A brilliant young American scientist won the prize.", "us", "neutral"),
    ("Russia invaded its neighbour in a brutal, unprovoked attack.", "russia", "negative"),
    ("Aid workers thanked the United Nations for its generous and swift help.", "un", "positive"),
]


@pytest.mark.parametrize(("text", "target", "expected"), PRODUCT_CASES)
def test_the_product_judges_incidental_mentions_neutral(
    product_scorer: TargetMentionScorer, text: str, target: str, expected: str
) -> None:
    stance = analyse_stance(text, product_scorer).targets[target]
    assert stance.label == expected, (stance.score, stance.confidence)
    assert stance.label in LABELS


_PIECES = st.sampled_from(
    [
        "US",
        "U.S.",
        "Russia",
        "Russian",
        "American",
        "the",
        "UN",
        "Putin",
        "Moscow",
        "in",
        "to",
        "of",
        "'s",
        "’s",
        "Co",
        "Open",
        "President",
        "oil",
        "forces",
        "rapper",
        "moved",
        "back",
        ",",
        ".",
        '"',
        "-",
        "<UN.AS>",
        "Ünïcode",
        "\u200b",
        "Smith",
        "A",
        "And",
        "policy",
        "the American",
        "\n",
    ]
)


@given(st.lists(_PIECES, max_size=40), st.text(max_size=20))
@settings(max_examples=300, deadline=None)
def test_any_text_gets_a_known_use_or_none(pieces: list[str], noise: str) -> None:
    text = " ".join(pieces) + noise
    for mention in find_mentions(text):
        assert text[mention.start : mention.end] == mention.text
        assert mention.incidental in {None, "place", "market", "origin", "name"}
        if mention.kind == "person":
            assert mention.incidental is None
