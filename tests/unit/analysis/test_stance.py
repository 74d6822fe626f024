"""Stance: alias mentions, aggregation into article labels, evidence with offsets.

Uses the lexicon scorer, a real (fast, model-free) implementation of the sentence scorer protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.analysis.stance import (
    MAX_JUDGED_SENTENCES,
    LexiconScorer,
    TargetedSentence,
    _starts_or_ends_inside,
    analyse_stance,
    find_mentions,
)

SEEDS = Path(__file__).resolve().parents[3] / "seeds"
SEED_TEXTS = {p.stem[:3]: p.read_text(encoding="utf-8") for p in sorted(SEEDS.glob("*.txt"))}


@pytest.fixture(scope="module")
def scorer() -> LexiconScorer:
    return LexiconScorer()


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("Washington and the Pentagon said the U.S. would act.", {"us": ["Washington", "Pentagon", "U.S."]}),
        (
            "The Kremlin said Putin met Lavrov in Moscow.",
            {"russia": ["Kremlin", "Putin", "Lavrov", "Moscow"]},
        ),
        (
            "The UN Security Council and the General Assembly met; the U.N. chief spoke.",
            {"un": ["UN Security Council", "General Assembly", "U.N."]},
        ),
        (
            "US-led efforts were blocked by Russia at the United Nations.",
            {"us": ["US-led"], "russia": ["Russia"], "un": ["United Nations"]},
        ),
        ("She flew from Latin America to read the Washington Post.", {}),
        ("LET US GO NOW, THEY SAID LOUDLY.", {}),
        ("Please CALL US with your tips, or JOIN US on Sunday.", {}),
        ("Denzel Washington was seen with the Washington Commanders in Seattle, Washington.", {}),
        ("Ivanka Trump opened a Trump Tower; Banc of America and America Online paid.", {}),
        ("Trump said Rubio would raise it with the UN.", {"us": ["Trump", "Rubio"], "un": ["UN"]}),
        (
            "The Soviet Union and Gorbachev, unlike post-Soviet Georgia, backed Soviet troops.",
            {"russia": ["Soviet Union", "Gorbachev", "Soviet"]},
        ),
        ("Former Soviet republics and Soviet-era buildings.", {}),
        ("Trump card games and Trump Hotels; Fred Trump and Rubio's Restaurants.", {}),
        ("The unclear union of states.", {}),
        # A hyphen joins words without hiding them.
        (
            "The Russia-Ukraine war strained US-Russia ties; anti-American and pro-Russian crowds met.",
            {"russia": ["Russia", "Russia", "Russian"], "us": ["US", "American"]},
        ),
        ("U.S.-Russian talks on a UN-run school.", {"us": ["U.S."], "russia": ["Russian"], "un": ["UN"]}),
        # "American" in a compound of its own is no mention; "anti-American" is.
        ("African-American voters, the Inter-American Development Bank and un-American acts.", {}),
        # A curly apostrophe, a line break or a double space inside a phrase.
        ("He won the America’s Cup; Hunter Biden and Jill Biden watched.", {}),
        ("The UN Security\nCouncil met.", {"un": ["UN Security\nCouncil"]}),
        # Homonyms: US state legislatures, a town in Idaho.
        ("The Georgia General Assembly met police from Moscow, Idaho.", {}),
    ],
)
def test_mentions_by_alias(sentence: str, expected: dict[str, list[str]]) -> None:
    found: dict[str, list[str]] = {}
    for mention in find_mentions(sentence):
        found.setdefault(mention.target, []).append(mention.text)
        assert sentence[mention.start : mention.end] == mention.text
    assert found == expected


@pytest.mark.parametrize("seed", sorted(SEED_TEXTS))
def test_seed_stance_evidence_has_correct_offsets(seed: str, scorer: LexiconScorer) -> None:
    text = SEED_TEXTS[seed]
    report = analyse_stance(text, scorer)
    assert set(report.targets) == {"us", "russia", "un"}
    for target in report.targets.values():
        assert -1 <= target.score <= 1
        assert 0 <= target.confidence <= 1
        if target.label == "not_mentioned":
            assert target.mentions == 0
            assert target.evidence == ()
            continue
        assert target.mentions >= 1
        assert target.evidence
        for evidence in target.evidence:
            assert text[evidence.start : evidence.end] == evidence.text
            for mention in evidence.mentions:
                assert text[mention.start : mention.end] == mention.text
                assert evidence.start <= mention.start < mention.end <= evidence.end


def test_un_is_not_mentioned_only_in_004(scorer: LexiconScorer) -> None:
    labels = {seed: analyse_stance(text, scorer).targets["un"].label for seed, text in SEED_TEXTS.items()}
    assert labels["004"] == "not_mentioned"
    assert all(label != "not_mentioned" for seed, label in labels.items() if seed != "004")
    for text in SEED_TEXTS.values():
        report = analyse_stance(text, scorer)
        assert report.targets["us"].label != "not_mentioned"
        assert report.targets["russia"].label != "not_mentioned"


class _FixedScorer:
    """Fixed probabilities per mention text (or per sentence): isolates the aggregation arithmetic."""

    version = "fixed"

    def __init__(self, rows: dict[str, list[float]], by_sentence: bool = False) -> None:
        self.rows = rows
        self.by_sentence = by_sentence

    def predict(self, items: Sequence[TargetedSentence]) -> npt.NDArray[np.float64]:
        keys = [item.text if self.by_sentence else item.text[item.start : item.end] for item in items]
        return np.array([self.rows[key] for key in keys])


def test_aggregation_weights_names_above_adjectives() -> None:
    text = "Russia praised the deal. Russian hackers attacked the bank."
    scorer = _FixedScorer({"Russia": [0.1, 0.2, 0.7], "Russian": [0.8, 0.1, 0.1]})
    russia = analyse_stance(text, scorer).targets["russia"]
    # weights 1.0 (name) and 0.4 (adjective): mean = (1.0*[.1,.2,.7] + .4*[.8,.1,.1]) / 1.4
    expected = (np.array([0.1, 0.2, 0.7]) + 0.4 * np.array([0.8, 0.1, 0.1])) / 1.4
    assert russia.label == "positive"
    assert russia.score == pytest.approx(expected[2] - expected[0], abs=1e-4)
    assert russia.confidence == pytest.approx(expected[2], abs=1e-4)
    assert russia.mentions == 2
    assert [e.text for e in russia.evidence] == [
        "Russia praised the deal.",
        "Russian hackers attacked the bank.",
    ]


def test_sentences_that_name_the_target_only_in_passing_count_a_tenth() -> None:
    actor = "Critics condemned Russia for the attack."
    places = ["Sales in Russia rose.", "Talks in Moscow ended early.", "Prices in Russia fell."]
    neutral = [0.05, 0.9, 0.05]
    scorer = _FixedScorer({actor: [0.7, 0.2, 0.1], **dict.fromkeys(places, neutral)}, by_sentence=True)
    russia = analyse_stance(" ".join([actor, *places]), scorer).targets["russia"]
    # weights 1.0 for the actor's sentence, 0.1 (name and metonym, incidental) for each place
    expected = (np.array([0.7, 0.2, 0.1]) + 0.1 * 3 * np.array(neutral)) / 1.3
    assert russia.label == "negative"
    assert russia.confidence == pytest.approx(expected[0], abs=1e-4)
    assert russia.mentions == 4

    only_places = analyse_stance(" ".join(places), scorer).targets["russia"]
    assert only_places.label == "neutral"
    assert only_places.confidence == pytest.approx(0.9, abs=1e-4)


def test_lexicon_scorer_reads_clear_sentences(scorer: LexiconScorer) -> None:
    text = "Washington praised the brave and generous aid. The Kremlin's brutal attack killed dozens."
    report = analyse_stance(text, scorer)
    assert report.targets["russia"].label == "negative"
    assert report.targets["un"].label == "not_mentioned"


@pytest.mark.parametrize(
    "text",
    [
        "<p>The US said the <b>US</b> was wrong &amp; the US lied.</p>",  # markup inside the sentence
        "The US\u200b said the US is bad and the US is wrong.",  # an invisible character dropped
        "The sanc\u00adtions on Rus\u00adsia hurt the U.S. badly.",  # soft hyphens inside the mention
        "<p>The United&nbsp;States condemned Russia.</p>",  # an entity inside the mention
        "<p>Moscow   said  the\n  US  was   wrong.</p>",  # whitespace runs collapsed in the sentence text
        "<p>" + "<b>US</b>  and\n " * 2000 + "others.</p>",  # one sentence's map for its 2,000 mentions
    ],
)
def test_mention_and_holder_offsets_point_at_their_own_words(text: str, scorer: LexiconScorer) -> None:
    report = analyse_stance(text, scorer)
    spans = []
    for target in report.targets.values():
        for evidence in target.evidence:
            for mention in evidence.mentions:
                spans.append((mention.start, mention.end))
                assert (
                    " ".join(
                        text[mention.start : mention.end].replace("&nbsp;", " ").replace("\u00ad", "").split()
                    )
                    == mention.text
                )
            if evidence.holder is not None:
                assert (
                    text[evidence.holder.start : evidence.holder.end].replace("&nbsp;", " ")
                    == evidence.holder.text
                )
    assert spans
    assert len(set(spans)) == len(spans)  # each mention at its own place, not all at the first


def test_only_the_first_sentences_of_a_target_are_judged_but_every_mention_is_counted() -> None:
    asked: list[int] = []

    class CountingScorer(LexiconScorer):
        def predict(self, items: Sequence[TargetedSentence]) -> npt.NDArray[np.float64]:
            asked.append(len(items))
            return super().predict(items)

    text = "The US praised the plan. " * (MAX_JUDGED_SENTENCES + 300)
    report = analyse_stance(text, CountingScorer())
    assert asked == [MAX_JUDGED_SENTENCES]  # one target, its first sentences
    assert report.targets["us"].mentions == MAX_JUDGED_SENTENCES + 300


def test_a_place_or_origin_joined_by_a_hyphen_is_incidental() -> None:
    uses = {
        m.text: m.incidental
        for m in find_mentions("A Moscow-based analyst and a Russian-born, US-made drone.")
    }
    assert uses == {"Moscow": "place", "Russian": "origin", "US": "origin"}
    assert [m.incidental for m in find_mentions("Non-U.S. citizens and ex-Russian spies.")] == [
        "origin",
        "origin",
    ]
    assert [m.incidental for m in find_mentions("A 104 mln U.S.-dlr bid.")] == ["market"]
    assert [m.incidental for m in find_mentions("A Russian-American journalist.")] == ["origin"]
    # A compound that names the state as an actor keeps it one.
    assert [m.incidental for m in find_mentions("Kremlin-linked hackers and US-Japan talks.")] == [None, None]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 60), st.integers(1, 8)), max_size=12),
    st.integers(0, 60),
    st.integers(1, 10),
)
def test_the_bisected_exclusion_check_agrees_with_a_scan_of_every_span(
    gaps: list[tuple[int, int]], start: int, length: int
) -> None:
    spans, position = [], 0
    for gap, width in gaps:  # non-overlapping and in order, as finditer gives them
        spans.append((position + gap, position + gap + width))
        position += gap + width
    end = start + length
    scanned = any(s <= start < e or s < end <= e for s, e in spans)
    assert _starts_or_ends_inside(start, end, spans) == scanned


@pytest.mark.parametrize("seed", sorted(SEED_TEXTS))
def test_a_byte_order_mark_changes_no_seed_evidence(seed: str, scorer: LexiconScorer) -> None:
    def evidence(text: str, shift: int) -> list[tuple[str, int, int, tuple[str, int, int] | None]]:
        return [
            (
                e.text,
                e.start - shift,
                e.end - shift,
                e.holder and (e.holder.text, e.holder.start - shift, e.holder.end - shift),
            )
            for target in analyse_stance(text, scorer).targets.values()
            for e in target.evidence
        ]

    text = SEED_TEXTS[seed]
    assert evidence("\ufeff" + text, 1) == evidence(text, 0)
