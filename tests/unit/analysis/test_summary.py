"""Extractive summary: whole sentences, in order, with offsets, of the requested length, no boilerplate."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.analysis.summary import MAX_SENTENCES, summarize

SEEDS = Path(__file__).resolve().parents[3] / "seeds"
SEED_TEXTS = {p.stem[:3]: p.read_text(encoding="utf-8") for p in sorted(SEEDS.glob("*.txt"))}


@pytest.mark.parametrize("seed", sorted(SEED_TEXTS))
def test_seed_summary_is_three_whole_sentences_in_order(seed: str) -> None:
    text = SEED_TEXTS[seed]
    summary = summarize(text)
    assert len(summary.sentences) == 3
    starts = [s.start for s in summary.sentences]
    assert starts == sorted(starts)
    for sentence in summary.sentences:
        assert text[sentence.start : sentence.end] == sentence.text
        assert sentence.text[-1] in '.!?”"’'  # whole sentences, not headlines or fragments
    assert summary.text == " ".join(s.text for s in summary.sentences)


@pytest.mark.parametrize("seed", sorted(SEED_TEXTS))
def test_seed_summary_has_no_boilerplate(seed: str) -> None:
    summary = summarize(SEED_TEXTS[seed]).text.lower()
    for marker in (
        "follow us",
        "image source",
        "also read",
        "source:",
        "originally published",
        "photo:",
        "inputs from",
    ):
        assert marker not in summary


def test_length_options() -> None:
    text = SEED_TEXTS["004"]
    assert len(summarize(text, sentences=1).sentences) == 1
    assert len(summarize(text, sentences=5).sentences) == 5
    body = 15  # 004 has 15 body sentences
    assert len(summarize(text, ratio=0.2).sentences) == 3  # ceil(15 * 0.2)
    assert len(summarize(text, sentences=MAX_SENTENCES + 10).sentences) == body


@pytest.mark.parametrize(("sentences", "ratio", "wanted"), [(25, 0.28, 7), (50, 0.14, 7), (30, 0.9, 20)])
def test_a_ratio_is_the_share_rounded_up_exactly(sentences: int, ratio: float, wanted: int) -> None:
    def word(n: int) -> str:  # a made-up word of its own for each n, so no sentence repeats another
        return "".join(chr(ord("a") + (n // 26**k) % 26) for k in range(3)).capitalize()

    text = " ".join(
        f"{word(4 * n)} officials said the {word(4 * n + 1)} plan for {word(4 * n + 2)} is {word(4 * n + 3)}."
        for n in range(sentences)
    )
    assert len(summarize(text).sentences) == 3  # every sentence is one the summary may choose
    assert len(summarize(text, ratio=ratio).sentences) == wanted  # 0.28 * 25 is 7.000000000000001 in floats


def test_lead_sentence_of_a_wire_story_is_chosen() -> None:
    summary = summarize(SEED_TEXTS["000"])
    assert summary.sentences[0].text.startswith("North Korea’s Foreign Ministry said it has agreed")


def test_short_and_empty_texts() -> None:
    assert summarize("").sentences == ()
    one = summarize("Only one short line.")
    assert [s.text for s in one.sentences] == ["Only one short line."]


def test_near_repeated_sentences_are_not_both_chosen() -> None:
    repeated = "The minister announced a new budget for schools and hospitals on Monday."
    text = " ".join(
        [
            repeated,
            repeated,
            "Critics said the plan was not enough for rural areas.",
            "Unions will meet on Friday to discuss it.",
        ]
    )
    texts = [s.text for s in summarize(text, sentences=2).sentences]
    assert texts.count(repeated) == 1


def test_captions_teasers_and_questions_are_passed_over() -> None:
    text = (
        "The city council approved a new budget for public transport on Tuesday after a long debate. "
        "Mayor Jane Doe (pictured) spoke to reporters outside the town hall in the afternoon sun. "
        "Packed buses: commuters have complained for years about overcrowding on the morning routes. "
        "Will the new money really be enough to fix the ageing fleet of buses and trams in time? "
        "The budget adds forty million euros for new trams and twelve new bus lines across the city. "
        "Work on the first tram line is expected to start next spring and to last about two years. "
        "Opposition members said the plan would raise fares for the poorest households in the city."
    )
    chosen = [s.text for s in summarize(text).sentences]
    assert chosen[0].startswith("The city council approved")
    assert not any("(pictured)" in s or s.startswith("Packed buses:") or s.endswith("?") for s in chosen)
    # Asked for every sentence, the passed-over ones still come, in order.
    assert len(summarize(text, sentences=7).sentences) == 7


def test_near_repeats_leave_the_summary_short_rather_than_filled_with_fragments() -> None:
    lead = "Russia expelled ten American diplomats on Monday, a sharp escalation of its row with Washington."
    text = (
        f"{lead} The foreign ministry said the diplomats had forty-eight hours to leave the country. "
        f"{lead[:-1]}, officials said. Scroll down for video."
    )
    chosen = [sentence.text for sentence in summarize(text, sentences=3).sentences]
    assert chosen == [
        lead,
        "The foreign ministry said the diplomats had forty-eight hours to leave the country.",
    ]


def test_a_text_of_headline_like_lines_is_summarised_from_them() -> None:
    flash = "Russia blocks UN resolution on Sudan ceasefire after marathon talks in New York"
    assert summarize(flash).text == flash
    bullets = "- The United States pledged an extra $5bn in aid\n- Russia walked out of the talks\n"
    assert [s.text for s in summarize(bullets, sentences=2).sentences] == [
        "- The United States pledged an extra $5bn in aid",
        "- Russia walked out of the talks",
    ]


@pytest.mark.parametrize(
    "lead",
    [
        "NEW DELHI: India and Russia on Tuesday signed a defence agreement worth ten billion dollars.",
        "MOSCOW, Jan 21: India and Russia on Tuesday signed a defence agreement worth ten billion dollars.",
        "The message from Moscow was clear: India and Russia will sign a defence agreement this week.",
    ],
)
def test_a_dateline_or_a_clause_before_a_colon_is_no_teaser_label(lead: str) -> None:
    text = (
        f"{lead} The agreement covers joint production of helicopters and spare parts for fighter jets. "
        "Officials said the deal would be ratified by both parliaments before the end of the year."
    )
    assert summarize(text, sentences=1).sentences[0].text == lead
    assert summarize(f"BREAKING: {text}", sentences=1).sentences[0].text != f"BREAKING: {lead}"


@pytest.mark.parametrize(
    "label", ["JUST IN", "LATEST", "READ ALSO", "WATCH VIDEO", "TOP STORY", "NEW", "EDITOR’S NOTE"]
)
def test_a_teaser_label_in_capitals_is_no_dateline(label: str) -> None:
    teaser = f"{label}: India and Russia on Tuesday signed a defence agreement worth ten billion dollars."
    text = (
        f"{teaser} The agreement covers joint production of helicopters and spare parts for fighter jets. "
        "Officials said the deal would be ratified by both parliaments before the end of the year."
    )
    assert summarize(text, sentences=1).sentences[0].text != teaser


@pytest.mark.parametrize("seed", sorted(SEED_TEXTS))
def test_a_byte_order_mark_changes_no_seed_summary(seed: str) -> None:
    text = SEED_TEXTS[seed]
    plain, marked = summarize(text), summarize("\ufeff" + text)  # a file saved with a BOM
    assert marked.text == plain.text
    assert [(s.start, s.end) for s in marked.sentences] == [(s.start + 1, s.end + 1) for s in plain.sentences]


def test_a_summary_of_items_that_open_with_emoji_is_of_whole_items() -> None:
    items = [
        "Russia launched a new wave of drone attacks on Kyiv overnight, officials in the capital said.",
        "🔴 The United States announced another package of military aid worth two billion dollars.",
        "🔴 The UN Security Council will hold an emergency meeting on Tuesday at the request of members.",
    ]
    summary = summarize(" ".join(items), sentences=1)
    assert [s.text for s in summary.sentences] == [items[0]]
