"""Sentiment holders: the speaker or actor a sentence attributes its statement to."""

from __future__ import annotations

import pytest

from workers.analysis.attribution import find_holder


@pytest.mark.parametrize(
    ("sentence", "holder", "cue"),
    [
        (
            "North Korea's Foreign Ministry condemned the UN Security Council on Sunday.",
            "North Korea's Foreign Ministry",
            "condemned",
        ),
        (
            "North Korea’s foreign ministry on Saturday lauded its ties with Russia.",
            "North Korea’s foreign ministry",
            "lauded",
        ),
        (
            "Kremlin spokesman Dmitry Peskov said the talks with Washington were useless.",
            "Kremlin spokesman Dmitry Peskov",
            "said",
        ),
        ('"The United States is lying," said Vasily Nebenzia, Russia\'s envoy.', "Vasily Nebenzia", "said"),
        ('"Washington is lying," Lavrov said.', "Lavrov", "said"),
        ("The sanctions hurt Russia badly, according to the World Bank.", "World Bank", "according to"),
        ("Russia has repeatedly accused the United States of escalating the war.", "Russia", "accused"),
        (
            "U.S. Secretary of State Antony Blinken told reporters that Moscow was isolated.",
            "U.S. Secretary of State Antony Blinken",
            "told",
        ),
        ('"You cannot sue the Russian government," said Eric Kraus.', "Eric Kraus", "said"),
        (
            "Russia is a bad partner, said Moscow-based US lawyer Jamie Firestone.",
            "Moscow-based US lawyer Jamie Firestone",
            "said",
        ),
        ("Following claims that US forces were involved, the UN said nothing.", "UN", "said"),
        ('"We will fight," said Zelensky in a statement.', "Zelensky", "said"),
        (
            '"No," said Russian Foreign Minister Sergei Lavrov at a news conference.',
            "Russian Foreign Minister Sergei Lavrov",
            "said",
        ),
        ('"No," said Lavrov on Tuesday.', "Lavrov", "said"),
        # An abbreviation keeps its period, and a role word may carry the sentence's.
        ('"The U.S. is wrong," said the U.N. chief.', "U.N. chief", "said"),
        ("Russia lied, said the U.S.", "U.S.", "said"),
        (
            "According to the U.S. State Department, Russia violated the treaty.",
            "U.S. State Department",
            "according to",
        ),
        (
            "According to Russian newspaper Vedomosti, the credits would repay Rosneft's loans.",
            "Russian newspaper Vedomosti",
            "according to",
        ),
        # The words before '," said' are the quotation's; the speaker's article and number are not theirs.
        (
            '"The sanctions are a crime against Russia," said one European diplomat.',
            "European diplomat",
            "said",
        ),
        ('"No," said Lavrov in Moscow.', "Lavrov", "said"),
        ('"No," said a senior U.S. trade official.', "U.S. trade official", "said"),
        ('"Talks stalled," said UN special envoy Jan Kubis.', "UN special envoy Jan Kubis", "said"),
        # A phrase read forward runs through lower-case words before a name, and "according to" takes a
        # whole noun phrase; descriptions before the name go.
        (
            "According to US research firm Pew, most Americans distrust Russia.",
            "US research firm Pew",
            "according to",
        ),
        ("According to a senior US official, Russia lied.", "US official", "according to"),
        (
            "A blog is created every 5.8 seconds, according to a US research think-tank.",
            "US research think-tank",
            "according to",
        ),
        ("Trade with Russia fell, according to calculations by Reuters.", "Reuters", "according to"),
        ("Western diplomats said the Kremlin had violated the ceasefire.", "Western diplomats", "said"),
        ("May said the United Nations had failed.", "May", "said"),
        # A US lawmaker's party and state stand between the name and the verb.
        ("Sen. Lindsey Graham, R-S.C., said Russia must pay.", "Sen. Lindsey Graham", "said"),
        ("Rep. Adam Schiff, D-Calif., said the Kremlin lied.", "Rep. Adam Schiff", "said"),
    ],
)
def test_holder_is_named_with_its_offsets(sentence: str, holder: str, cue: str) -> None:
    found = find_holder(sentence)
    assert found is not None
    assert (found.text, found.cue) == (holder, cue)
    assert sentence[found.start : found.end] == holder


@pytest.mark.parametrize(
    "sentence",
    [
        "He said the United Nations had failed.",  # pronouns are not resolved
        "Sales in Russia rose by five percent last year.",
        "The Security Council will vote on the resolution next week.",
        "",
        # A place or an object before the verb is not its subject.
        "Diplomats in Washington said the Kremlin had violated the ceasefire.",
        "Zelensky, who met Putin in Istanbul, said Russia must pay.",
        "Malcolm Baldrige voiced concern about trade with South Korea and Taiwan and said it must end.",
        # A speech verb's object is its listener, not its speaker.
        "Russia must pay, the official, who did not want to be named, told Reuters.",
        # Quantifiers and dates are no one.
        "Some said the United Nations had failed.",
        "The report, dated March 27, said many sources doubted the UN figures.",
        # Nouns, not verbs; and what follows "called" is its object.
        "There are programs in 34 U.S. states that help.",
        "The reform, called the Foreign Agricultural Investment Reform (FAIR) Act, passed.",
        # "the U.S." is what Putin spoke of, not a speaker: its period does not close the clause.
        "Putin, speaking in Moscow, said the U.S. was lying.",
    ],
)
def test_no_holder_when_none_is_named(sentence: str) -> None:
    assert find_holder(sentence) is None


@pytest.mark.timeout(10)  # the inputs below took minutes (exponential or quadratic) before the fix
@pytest.mark.parametrize(
    ("sentence", "holder"),
    [
        ("Officials " + "has " * 40 + "Moscow said the US is bad.", "Moscow"),  # repeated adverbials
        ("Officials" + " " * 5000 + "Moscow said the US is bad.", "Moscow"),  # a run of spaces
        ("US said " * 25_000, "US"),  # 200,000 characters of verbs without a full stop
    ],
)
def test_hostile_sentences_are_read_in_linear_time(sentence: str, holder: str) -> None:
    found = find_holder(sentence)
    assert found is not None
    assert found.text == holder
    assert sentence[found.start : found.end] == holder
