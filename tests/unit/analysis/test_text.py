"""Text preparation: boilerplate and markup go, offsets keep pointing into the submitted text."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from workers.analysis.text import has_words, prepare

SEEDS = Path(__file__).resolve().parents[3] / "seeds"


@pytest.mark.parametrize("path", sorted(SEEDS.glob("*.txt")), ids=lambda p: p.stem[:3])
def test_seed_sentences_slice_the_original_text(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    doc = prepare(text)
    assert len(doc.sentences) >= 10
    for sentence in doc.sentences:
        assert text[sentence.start : sentence.end] == sentence.text


@pytest.mark.parametrize(
    ("seed", "boilerplate"),
    [
        ("000", "date 2024-01-21"),
        ("001", "SOURCE:AP"),
        ("001", "/ Photo: AP Archive"),
        ("001", "January 21, 2024"),
        ("002", "Follow us on"),
        ("002", "Image Source"),
        ("002", "Also Read:"),
        ("002", "(With inputs from agencies)"),
        ("004", "This article was originally published"),
    ],
)
def test_seed_boilerplate_is_removed(seed: str, boilerplate: str) -> None:
    text = next(SEEDS.glob(f"{seed}_*.txt")).read_text(encoding="utf-8")
    assert boilerplate in text
    doc = prepare(text)
    assert boilerplate not in doc.clean
    assert all(boilerplate not in sentence.text for sentence in doc.sentences)


def test_prefix_boilerplate_keeps_the_rest_of_the_line() -> None:
    doc = prepare(" date 2024-01-21 North Korea said it agreed. More follows here.")
    assert doc.sentences[0].text == "North Korea said it agreed."
    assert doc.sentences[0].start == 17


def test_html_is_stripped_and_offsets_point_into_the_markup() -> None:
    html = (
        "<html><head><title>T</title><script>var x = 'The U.S. said';</script></head><body>"
        "<h1>Big &amp; bold</h1><p>The U.S. said <b>never</b>. Russia&#39;s envoy agreed.</p>"
        "<figure><img src='x.jpg'><figcaption>A caption</figcaption></figure>"
        "<p>Second paragraph &mdash; here.</p></body></html>"
    )
    doc = prepare(html)
    texts = [s.text for s in doc.sentences]
    assert texts == [
        "Big & bold",
        "The U.S. said never.",
        "Russia's envoy agreed.",
        "Second paragraph — here.",
    ]
    assert doc.sentences[0].is_heading
    assert html[doc.sentences[1].start : doc.sentences[1].end] == "The U.S. said <b>never</b>."
    assert html[doc.sentences[2].start : doc.sentences[2].end] == "Russia&#39;s envoy agreed."
    assert "var x" not in doc.clean
    assert "caption" not in doc.clean


def test_titles_do_not_end_sentences() -> None:
    doc = prepare("Mr. Kim left at 3 p.m. on Friday. Dr. Lee stayed. Then it rained.")
    assert [s.text for s in doc.sentences] == [
        "Mr. Kim left at 3 p.m. on Friday.",
        "Dr. Lee stayed.",
        "Then it rained.",
    ]


def test_invisible_and_control_characters_are_dropped_but_offsets_hold() -> None:
    text = "Zero\u200bwidth here.\x00 Next one."
    doc = prepare(text)
    assert doc.sentences[0].text == "Zerowidth here."
    assert (doc.sentences[0].start, doc.sentences[0].end) == (0, 16)
    assert text[doc.sentences[1].start : doc.sentences[1].end] == "Next one."


def test_words_carry_original_offsets() -> None:
    text = "<p>Hello <i>world</i>, it’s me.</p>"
    words = prepare(text).words
    assert [w.text for w in words] == ["Hello", "world", "it’s", "me"]
    assert all(text[w.start : w.end] == w.text for w in words)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", False), ("  \n\t", False), ("12 34 !!", False), ("ok", True), ("Сергей", True)],
)
def test_has_words(text: str, expected: bool) -> None:
    assert has_words(text) is expected


def test_empty_and_markup_only_texts_have_no_sentences() -> None:
    assert prepare("").sentences == ()
    assert prepare("<p></p><script>alert(1)</script>").sentences == ()


@pytest.mark.parametrize("line", ["Oil prices", "an email", "Kim Jong Un"])
def test_short_ordinary_lines_are_kept(line: str) -> None:
    assert prepare(line).clean == line


def test_capitals_only_kicker_is_dropped() -> None:
    assert prepare("WORLD\nNorth Korea said it agreed.").clean.strip() == "North Korea said it agreed."


@pytest.mark.timeout(20)  # each took from 25 s to several minutes before (quadratic backtracking or scans)
@pytest.mark.parametrize(
    "hostile",
    [
        "<p" + " " * 199_000 + "x",  # the markup sniffing pattern
        "<p>a</p>" + "<!--" * 49_000,  # comments never closed
        "<p>a</p>" + "<a" * 99_000,  # tags never closed
        "<p>a</p>" + "<?" * 49_000 + "</a" * 30_000,
        "<A " + "=" * 199_000,  # an attribute-looking run: 47 s with `[^<>]*=` in the sniffing pattern
        "<p " + "a=" * 99_000,
    ],
)
def test_hostile_markup_is_prepared_in_linear_time(hostile: str) -> None:
    doc = prepare("The US said so. " + hostile)
    assert doc.sentences[0].text.startswith("The US said so.")
    for sentence in doc.sentences:
        assert doc.original[sentence.start : sentence.end] == sentence.text


def test_an_unclosed_comment_is_read_as_text_as_before() -> None:
    doc = prepare("<p>The US said so.</p><p>Then <!-- it left")
    assert doc.clean.splitlines()[0] == "The US said so."
    assert "it left" in doc.clean


@pytest.mark.parametrize(
    "prose",
    [
        "Related-party transactions at the Russian bank rose by a fifth last year.",
        "Writing by candlelight, the UN envoy finished his report before dawn.",
        "Related: the US condemned Russia on Sunday over the attack, officials said, and the two sides agreed"
        " to meet again in Geneva later this week to discuss the matter and the next steps in the long"
        " running talks over the border.",
    ],
)
def test_prose_that_starts_like_boilerplate_is_kept(prose: str) -> None:
    assert prepare(prose).clean == prose


@pytest.mark.parametrize(
    ("markup", "clean"),
    [
        (  # valid HTML5: </head> is optional
            "<html><head><meta charset=utf-8><title>X</title><body><p>The US condemned Russia.</p>",
            "The US condemned Russia.\n",
        ),
        (
            "<p>A.</p><embed src=a.swf><p>The US condemned it.</p>",
            "A.\nThe US condemned it.\n",
        ),  # no </embed>
        (
            "<p>The ministry said the United\nStates had broken it.</p>",
            "The ministry said the United States had broken it.\n",
        ),
        (
            "<p>AT&T said the US market &amp chips &#169; &unknown; rose.</p>",
            "AT&T said the US market & chips © &unknown; rose.\n",
        ),
    ],
)
def test_markup_is_read_as_a_browser_shows_it(markup: str, clean: str) -> None:
    assert prepare(markup).clean == clean


def test_plain_text_with_an_entity_keeps_its_line_breaks() -> None:
    assert (
        prepare("First paragraph of AT&amp;T.\nSecond paragraph.").clean
        == "First paragraph of AT&T.\nSecond paragraph."
    )


@pytest.mark.parametrize(
    "wire",
    [
        "<Morgan Grenfell Group Plc> said its 1986 profits fell, citing its holding in <Guinness Plc>.",
        "Phillips Petroleum Co <P> first quarter results\n\nPhillips said profits rose 12 pct.",
        "Shares of Apple Inc <AAPL.O> and DuPont <DD.N> rose.\nA second paragraph.",
        "Line one<BR>line two, as typed.",
    ],
)
def test_wire_codes_in_angle_brackets_are_text_not_markup(wire: str) -> None:
    # Wire copy names companies and tickers in angle brackets; none of them is an HTML element in use.
    assert prepare(wire).clean == wire


def test_wire_codes_inside_real_markup_are_kept() -> None:
    doc = prepare(
        "<p>Morgan <Morgan Grenfell Group Plc> and <AAPL.O> rose.</p><p>Next <my-widget>x</my-widget>.</p>"
    )
    assert doc.clean == "Morgan <Morgan Grenfell Group Plc> and <AAPL.O> rose.\nNext x.\n"
    first = doc.sentences[0]
    assert doc.original[first.start : first.end] == "Morgan <Morgan Grenfell Group Plc> and <AAPL.O> rose."


def test_a_sentence_is_not_split_inside_a_wire_code() -> None:
    text = "Bear Stearns and Co <BSC> has purchased <W.J. Damico Inc>, a specialist unit. It said so."
    assert [s.text for s in prepare(text).sentences] == [
        "Bear Stearns and Co <BSC> has purchased <W.J. Damico Inc>, a specialist unit.",
        "It said so.",
    ]


@pytest.mark.parametrize(
    ("wire", "clean"),
    [
        (
            "The bank gave 243 mln stg in assistance today. REUTER\n",
            "The bank gave 243 mln stg in assistance today.\n",
        ),
        ("It said profits rose.\n REUTER\n", "It said profits rose.\n\n"),
        ("A Reuter correspondent said so.", "A Reuter correspondent said so."),  # not a sign-off
    ],
)
def test_a_wire_sign_off_is_dropped(wire: str, clean: str) -> None:
    doc = prepare(wire)
    assert doc.clean == clean
    for sentence in doc.sentences:
        assert wire[sentence.start : sentence.end] == sentence.text


def test_a_wire_code_split_across_lines_in_markup_stays_one_code() -> None:
    doc = prepare(
        "<p>The firm bought <Guinness\nPlc> for 10 mln stg. It said so.</p><p>Word's <o:p></o:p>tag.</p>"
    )
    assert [s.text for s in doc.sentences] == [
        "The firm bought <Guinness Plc> for 10 mln stg.",
        "It said so.",
        "Word's tag.",
    ]


def test_only_a_capitalised_code_keeps_a_sentence_from_splitting() -> None:
    text = "Inflation was <2 percent. Growth beat the forecast > expected. Next sentence."
    assert len(prepare(text).sentences) == 3


def test_a_sign_off_before_a_unicode_line_separator_keeps_the_break() -> None:
    assert prepare("Profits rose 5 pct. REUTER\u2028Next story here begins.").clean == (
        "Profits rose 5 pct.\u2028Next story here begins."
    )


def test_a_sentence_that_opens_with_a_title_is_its_own() -> None:
    doc = prepare(
        "The Kremlin denied any role. Mr. Putin said so. It was signed by Gen. Smith and U.S. Sen. Graham."
    )
    assert [s.text for s in doc.sentences] == [
        "The Kremlin denied any role.",
        "Mr. Putin said so.",
        "It was signed by Gen. Smith and U.S. Sen. Graham.",
    ]


@pytest.mark.parametrize("width", [35, 50, 72])
@pytest.mark.parametrize("path", sorted(SEEDS.glob("*.txt"))[:3], ids=lambda p: p.stem[:3])
def test_hard_wrapped_text_is_read_in_paragraphs(path: Path, width: int) -> None:
    text = path.read_text(encoding="utf-8")
    wrapped = "\n\n".join(textwrap.fill(p, width) for p in text.split("\n") if p.strip())
    doc = prepare(wrapped)
    # The same sentences, but for the line breaks (a break after a hyphen leaves a space in this test).
    flowing = [re.sub(r"-\s+", "-", " ".join(s.text.split())) for s in doc.sentences]
    assert flowing == [s.text for s in prepare(text).sentences]
    for sentence in doc.sentences:
        assert wrapped[sentence.start : sentence.end] == sentence.text


@pytest.mark.parametrize(
    "boilerplate",
    [
        "Read more: Kremlin denies role in strikes on grain port in Odesa region",
        "Kremlin officials at a briefing in Moscow, Russia, Jan. 5 (AP Photo/Alexander Zemlianichenko)",
    ],
)
def test_a_wrapped_article_goes_on_after_a_boilerplate_line(boilerplate: str) -> None:
    # The line after the link or caption would not have fitted on it, but no one filled a link to the
    # width: the paragraph after it is the article's own, not the link's wrapped tail.
    text = (
        "Russian forces shelled the city again on Monday, officials said, and the\n"
        "United Nations said it was alarmed by the attacks on civilian targets in\n"
        "the region, which have killed dozens of people over the past few weeks.\n"
        f"{boilerplate}\n"
        "Washington promised more aid to Kyiv on Tuesday as the talks in Geneva\n"
        "stalled for a third day running without any progress, officials said.\n"
    )
    sentences = [" ".join(s.text.split()) for s in prepare(text).sentences]
    assert sentences[-1] == (
        "Washington promised more aid to Kyiv on Tuesday as the talks in Geneva stalled for a third day "
        "running without any progress, officials said."
    )
    assert not any(boilerplate[:20] in s for s in sentences)


def test_a_one_line_paragraph_after_a_link_stays() -> None:
    # A sentence of one line after the link is prose (few capitalised words), not the link's tail.
    prose = (
        "Russian forces shelled the city again on Monday, officials said, and the\n"
        "United Nations said it was alarmed by the attacks on civilian targets in\n"
        "the region, which have killed dozens of people over the past few weeks.\n"
    )
    link = "Read more: Why Is Russia Shelling The Grain Port In The Odesa Region Again\n"
    line = "Ukraine's foreign minister called the strikes a war crime on Tuesday.\n"
    sentences = [" ".join(s.text.split()) for s in prepare(prose + link + line + "\n" + prose).sentences]
    assert line.strip() in sentences
    assert not any("Read more" in s for s in sentences)


def test_a_wrapped_headline_after_a_link_goes_with_it() -> None:
    # The link's tail is a line of its own that ends a sentence, but no paragraph of prose: it goes.
    prose = (
        "Russian forces shelled the city again on Monday, officials said, and the\n"
        "United Nations said it was alarmed by the attacks on civilian targets in\n"
        "the region, which have killed dozens of people over the past few weeks.\n"
    )
    link = (
        "Read more: Why Is Russia Shelling The Grain Port In The Odesa Region Again\nAnd Who Will Stop It?\n"
    )
    sentences = [" ".join(s.text.split()) for s in prepare(prose + link + "\n" + prose).sentences]
    assert len(sentences) == 2
    assert not any("Stop It" in s for s in sentences)


@pytest.mark.timeout(10)  # the caption pattern on a long line took hours before it was bounded
def test_a_long_line_that_looks_like_a_caption_is_read_in_linear_time() -> None:
    text = (
        "Some prose line that goes on /photo:"
        + " " * 64_000
        + "x"
        + "y" * 61
        + "\nand goes on in lower case.\n"
    )
    assert prepare(text).sentences


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        # A line that starts in lower case carries on the one before it (no closing punctuation there).
        (
            "The deal includes\nsanctions relief for Moscow.",
            ["The deal includes\nsanctions relief for Moscow."],
        ),
        # A table's rows in text laid out a paragraph per line are not hard-wrapped prose.
        (
            "The economy grew last year.\n\nKey figures\nGDP growth, year on year 5.5 percent\n"
            "Inflation, year on year 8.6 percent\nUnemployment rate 2.4 percent\n\nRates stay on hold.",
            [
                "The economy grew last year.",
                "Key figures",
                "GDP growth, year on year 5.5 percent",
                "Inflation, year on year 8.6 percent",
                "Unemployment rate 2.4 percent",
                "Rates stay on hold.",
            ],
        ),
        # HTML's lines are its blocks: a headline, list items and table cells stay apart.
        (
            "<h1>Apple defies Russia ban</h1><p>iPhone sales rose.</p>",
            ["Apple defies Russia ban", "iPhone sales rose."],
        ),
        ("<ul><li>sanctions on banks</li><li>export bans</li></ul>", ["sanctions on banks", "export bans"]),
        # Headlines, list items and paragraphs of text that is not wrapped stay apart.
        (
            "Russia and US agree\nThe two sides met in Geneva.",
            ["Russia and US agree", "The two sides met in Geneva."],
        ),
        ("Key points:\n- talks resume\n- troops stay", ["Key points:", "- talks resume", "- troops stay"]),
        # A form feed (a page break of PDF copy) ends a line.
        ("Putin said nothing.\fThe U.N. responded.", ["Putin said nothing.", "The U.N. responded."]),
    ],
)
def test_line_breaks_inside_a_sentence(text: str, sentences: list[str]) -> None:
    assert [s.text for s in prepare(text).sentences] == sentences


def test_joiners_and_no_break_spaces_stay_in_the_sentence() -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # one emoji of three joined by zero-width joiners
    text = f"Antony\xa0Blinken met the family {family} in Moscow. می\u200cخواهم."
    for sentence in prepare(text).sentences:
        assert text[sentence.start : sentence.end] == sentence.text


@pytest.mark.parametrize(
    "boilerplate",
    [
        "Follow us on Twitter",
        "Copyright 2024 Nexstar Media Inc. All rights reserved. This material may not be published.",
        "By continuing to browse you agree to our use of cookies.",
        "We use cookies to improve your experience.",
    ],
)
def test_boilerplate_lines_go_whole(boilerplate: str) -> None:
    doc = prepare(f"Russia and the US met in Geneva.\n{boilerplate}\nTalks went well.")
    assert [s.text for s in doc.sentences] == ["Russia and the US met in Geneva.", "Talks went well."]


@pytest.mark.parametrize(
    "text",
    [
        "The U\u00adS said the US and the US\u200b agreed.",  # plain text, invisible characters dropped
        "<p>The US said the US and the US agreed.</p>",  # markup whose sentence is its own text
        "<p>" + "The <b>US</b>  and\n the " * 300 + "end.</p>",  # markup collapsed: one map, many spans
    ],
)
def test_a_span_mapper_maps_every_span_of_its_sentence(text: str) -> None:
    doc = prepare(text)
    (sentence,) = doc.sentences
    spans = [match.span() for match in re.finditer("US", sentence.text)]
    to_original = doc.span_mapper(sentence)
    mapped = [to_original(start, end) for start, end in spans]
    assert [text[start:end].replace("\u00ad", "") for start, end in mapped] == ["US"] * len(spans)
    assert mapped == sorted(set(mapped))  # each its own "US", in order


WIRE_COPY = (
    "Soviet officials said on Tuesday they were ready to resume talks with\n"
    "the United States on grain purchases after the row over subsidised\n"
    "wheat sales, a spokesman for <Continental Grain Co> said.\n\n"
    "The talks would be held in Moscow next month, the spokesman added, and\n"
    "officials of both countries expected them to last at least a week.\n"
)


@pytest.mark.parametrize(
    "markup",
    [
        WIRE_COPY.replace("<", "&lt;"),  # wire copy escaped as SGML: one character reference
        WIRE_COPY.replace("United States", "<b>United States</b>"),  # inline tags only
    ],
)
def test_markup_without_block_elements_is_read_in_paragraphs_as_plain_text_is(markup: str) -> None:
    plain, doc = prepare(WIRE_COPY), prepare(markup)
    assert doc.markup
    assert [(" ".join(s.text.split()), s.paragraph) for s in doc.sentences] == [
        (" ".join(s.text.split()), s.paragraph) for s in plain.sentences
    ]
    assert len(doc.sentences) == 2


def test_html_paragraphs_are_its_block_elements_even_when_the_next_starts_in_lower_case() -> None:
    blocks = ["Talks in Geneva ended without a deal", "and the envoys went home"]
    doc = prepare("\n".join(f"<p>{block}</p>" for block in blocks))
    assert [s.text for s in doc.sentences] == blocks


@pytest.mark.parametrize(
    ("boilerplate", "invisible"),
    [
        ("Also Read: Russia warns the United States over new sanctions", "\ufeffAlso"),  # a byte-order mark
        ("This article was originally published by The Moscow Times.", "orig\u00adinally"),  # soft hyphen
        ("Also Read: Russia warns the United States over new sanctions", "Read\u200b:"),  # zero-width space
        ("date 2024-01-21 Russia warned the United States on Monday.", "date\u2060 2024"),  # word joiner
    ],
)
def test_invisible_characters_hide_no_boilerplate(boilerplate: str, invisible: str) -> None:
    visible = invisible.translate(dict.fromkeys(map(ord, "\ufeff\u00ad\u200b\u2060")))
    line = boilerplate.replace(visible, invisible)
    assert line != boilerplate
    body = "Russia and the US met in Geneva.\n\nTalks went well."
    text, plain_text = f"{line}\n\n{body}", f"{boilerplate}\n\n{body}"
    doc, plain = prepare(text), prepare(plain_text)
    shift = len(line) - len(boilerplate)
    assert [(s.text, s.start - shift, s.end - shift) for s in doc.sentences] == [
        (s.text, s.start, s.end) for s in plain.sentences
    ]
    for sentence in doc.sentences:
        assert text[sentence.start : sentence.end] == sentence.text


@pytest.mark.parametrize(
    "symbol",
    [
        "🔴",
        "►",
        "★",
        "🇺🇦",
        "❤️",
        "👍🏽",
        "👨\u200d👩\u200d👧",
        "🔴🔴",
    ],  # emoji with a selector, a skin tone, joiners
)
@pytest.mark.parametrize("end", [".", "!", '."', ".)"])
def test_a_sentence_that_opens_with_a_symbol_is_a_sentence_of_its_own(symbol: str, end: str) -> None:
    first = f"Russia launched drones at Kyiv overnight, officials said{end}"
    second = f"{symbol} The United States announced more aid on Monday."
    assert [s.text for s in prepare(f"{first} {second}").sentences] == [first, second]


@pytest.mark.parametrize(
    "text",
    [
        "Russia said the talks with the United States had failed. ★★★★★",  # no word after the symbols
        "The forecast for Moscow is 30 °C and sunny on Monday.",  # a symbol inside a sentence
        "Ratings: Russia ★ The United States ★★ wrote the critics.",  # no sentence end before the symbol
    ],
)
def test_a_symbol_after_no_sentence_end_or_before_no_word_makes_no_break(text: str) -> None:
    assert [s.text for s in prepare(text).sentences] == [text]
