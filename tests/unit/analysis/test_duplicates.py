"""Near-duplicates: the seed relations, normalisation, passages with offsets, sketches and the index."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.analysis import duplicates
from workers.analysis.duplicates import (
    DuplicateMatch,
    DuplicateThresholds,
    SeedIndex,
    compare,
    find_duplicates,
    fingerprint,
    normalised_words,
    sketch,
    thresholds_from,
)

ROOT = Path(__file__).resolve().parents[3]
SEED_TEXTS = {p.stem: p.read_text(encoding="utf-8") for p in sorted((ROOT / "seeds").glob("*.txt"))}
SEED_IDS = sorted(SEED_TEXTS)
WIRE = SEED_IDS[:3]  # 000, 001, 002: edited copies of one wire story
REWRITE = SEED_IDS[3]  # 003: a different write-up reusing several wire paragraphs
RELATED = SEED_IDS[4]  # 004: same people, same week, a different story

UNRELATED = (
    "Heavy rain flooded parts of the river valley on Tuesday, closing schools and roads. "
    "Farmers said the harvest would be late this year after the wettest autumn on record. "
    "The regional weather office expects drier conditions by the weekend, although rivers will stay high. "
    "Volunteers filled sandbags outside the town hall while engineers inspected two damaged bridges."
)
OTHER_UNRELATED = (
    "The city council approved a new budget for public libraries on Monday evening.\n\n"
    "Opening hours will be extended at four branches, and two mobile libraries will visit villages "
    "that lost their branch a decade ago. Council members said the plan would be reviewed next spring."
)


@pytest.fixture(scope="module")
def index() -> SeedIndex:
    seeds = SeedIndex()
    for seed_id, text in SEED_TEXTS.items():
        seeds.add(seed_id, sketch(text))
    return seeds


def load(ids: Sequence[str]) -> dict[str, str]:
    return {seed_id: SEED_TEXTS[seed_id] for seed_id in ids if seed_id in SEED_TEXTS}


def found(text: str, index: SeedIndex) -> dict[str, DuplicateMatch]:
    return {match.seed_id: match for match in find_duplicates(text, index, load).matches}


def assert_passages_agree(text: str, seed_text: str, match: DuplicateMatch) -> None:
    """Each passage is word-aligned in both texts and holds the same normalised words."""
    for passage in match.shared_passages:
        ours = text[passage.start : passage.end]
        theirs = seed_text[passage.seed_start : passage.seed_end]
        assert normalised_words(ours) == normalised_words(theirs), (ours, theirs)
        assert len(normalised_words(ours)) >= DuplicateThresholds().min_passage_words
        for source, start, end in (
            (text, passage.start, passage.end),
            (seed_text, passage.seed_start, passage.seed_end),
        ):
            assert source[start].isalnum()
            assert source[end - 1].isalnum()
            assert start == 0 or not source[start - 1].isalnum()
            assert end == len(source) or not source[end].isalnum()


# The seed relations (the acceptance criteria)


@pytest.mark.parametrize(("a", "b"), [(WIRE[0], WIRE[1]), (WIRE[0], WIRE[2]), (WIRE[1], WIRE[2])])
def test_wire_copies_are_duplicates_both_ways(a: str, b: str) -> None:
    forward = compare(SEED_TEXTS[a], b, SEED_TEXTS[b])
    backward = compare(SEED_TEXTS[b], a, SEED_TEXTS[a])
    assert forward is not None
    assert backward is not None
    assert forward.verdict == backward.verdict == "duplicate"
    assert forward.similarity == backward.similarity  # both measures are symmetric
    assert forward.containment == backward.containment
    assert forward.similarity < 0.8  # a near-duplicate, not a copy
    assert_passages_agree(SEED_TEXTS[a], SEED_TEXTS[b], forward)


@pytest.mark.parametrize("wire", WIRE)
def test_rewrite_reusing_wire_paragraphs_is_partial(wire: str) -> None:
    match = compare(SEED_TEXTS[REWRITE], wire, SEED_TEXTS[wire])
    assert match is not None
    assert match.verdict == "partial"
    assert 0.1 <= match.containment < DuplicateThresholds().duplicate_containment
    assert match.shared_passages
    assert_passages_agree(SEED_TEXTS[REWRITE], SEED_TEXTS[wire], match)


@pytest.mark.parametrize("other", [*WIRE, REWRITE])
def test_related_story_matches_none_of_the_others(other: str) -> None:
    assert compare(SEED_TEXTS[RELATED], other, SEED_TEXTS[other]) is None
    assert compare(SEED_TEXTS[other], RELATED, SEED_TEXTS[RELATED]) is None


@pytest.mark.parametrize("seed_id", SEED_IDS)
def test_exact_copy_finds_its_seed_first_with_similarity_one(seed_id: str, index: SeedIndex) -> None:
    report = find_duplicates(SEED_TEXTS[seed_id], index, load)
    assert report.is_duplicate
    best = report.matches[0]
    assert best.seed_id == seed_id
    assert best.verdict == "duplicate"
    assert best.similarity >= 0.99
    assert best.containment >= 0.99


def test_seed_relations_through_the_index(index: SeedIndex) -> None:
    for wire in WIRE:
        matches = found(SEED_TEXTS[wire], index)
        assert {seed_id: m.verdict for seed_id, m in matches.items()} == {
            **dict.fromkeys(WIRE, "duplicate"),
            REWRITE: "partial",
        }
    rewrite = found(SEED_TEXTS[REWRITE], index)
    assert {seed_id: m.verdict for seed_id, m in rewrite.items()} == {
        REWRITE: "duplicate",
        **dict.fromkeys(WIRE, "partial"),
    }
    assert set(found(SEED_TEXTS[RELATED], index)) == {RELATED}


def test_matches_are_sorted_best_first(index: SeedIndex) -> None:
    report = find_duplicates(SEED_TEXTS[WIRE[1]], index, load)
    keys = [(m.verdict != "duplicate", -m.similarity) for m in report.matches]
    assert keys == sorted(keys)


@pytest.mark.parametrize("text", [UNRELATED, OTHER_UNRELATED, "", "   \n\n", "Short."])
def test_unrelated_news_has_no_matches(text: str, index: SeedIndex) -> None:
    report = find_duplicates(text, index, load)
    assert report.matches == ()
    assert report.is_duplicate is False


def test_html_copy_matches_with_offsets_into_the_html(index: SeedIndex) -> None:
    seed_id = WIRE[0]
    paragraphs = [p for p in SEED_TEXTS[seed_id].split("\n\n") if p.strip()]
    html = (
        "<html><head><title>World</title></head><body><nav>Home | World</nav>"
        + "".join(f"<p>{p.replace('“', '&ldquo;')}</p>\n" for p in paragraphs)
        + "<footer>Follow us on Twitter</footer></body></html>"
    )
    match = found(html, index)[seed_id]
    assert match.verdict == "duplicate"
    assert match.similarity >= 0.99
    assert match.shared_passages
    for passage in match.shared_passages:
        ours = html[passage.start : passage.end]
        assert not ours.startswith("<")
        assert not ours.endswith(">")
        theirs = SEED_TEXTS[seed_id][passage.seed_start : passage.seed_end]
        assert normalised_words(ours) == normalised_words(theirs)


def test_boilerplate_never_makes_a_match() -> None:
    boilerplate = (
        "Follow us on Twitter\n\n"
        "Image Source : REUTERS/FILE Officials at the ministry in the capital on Monday.\n\n"
        "{body}\n\nSOURCE:AP\n\n(With inputs from agencies)\n\n"
        "Also Read: North Korea's Foreign Minister holds meeting with Lavrov in Moscow amid concerns\n\n"
        "This article was originally published by The Conversation. Read the original article here."
    )
    assert (
        compare(boilerplate.format(body=UNRELATED), "other", boilerplate.format(body=OTHER_UNRELATED)) is None
    )


# Normalisation


@pytest.mark.parametrize(
    ("british", "american"),
    [
        ("strategic co-operation with Russia", "strategic cooperation with Russia"),
        ("a new multi-polarised order", "a new multi-polarized order"),
        ("its defence capabilities", "its defense capabilities"),
        ("upgrade Mr Kim's forces", "upgrade Kim’s forces"),
        ("said Ms. Choe on Sunday", "said Choe on Sunday"),
        ("it didn't pose a threat", "it did not pose a threat"),
        ("it didn’t pose a threat", "it did not pose a threat"),
        ("they won't go and can't stay", "they will not go and cannot stay"),
        ("It's been a year", "It has been a year"),
        ("We're sure it's here", "We are sure it is here"),
        ("rose 5 per cent", "rose 5 percent"),
        ("rose 5 pct", "rose 5 percent"),
        ("the U.S. economy", "the US economy"),
        ("the organisation realised", "the organization realized"),
        ("the colour of the centre", "the color of the center"),
        ("travelled to analyse the programme", "traveled to analyze the program"),
        ("on Jan 16", "on January 16"),
        ("they sent an e-mail to staff", "they sent an email to staff"),
    ],
)
def test_spelling_variants_normalise_alike(british: str, american: str) -> None:
    assert normalised_words(british) == normalised_words(american)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("the test-firing on January 14", "the test firing on January 14"),
        ("Russia's war on Ukraine", "Russia’s war on Ukraine"),
    ],
)
def test_punctuation_variants_normalise_alike(a: str, b: str) -> None:
    assert normalised_words(a) == normalised_words(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("they exercise daily", "they exercize daily"),  # -ise verbs that are not -ize in the US stay
        ("the rise in prices", "the rize in prices"),
        ("we miss Kim", "we Kim"),  # only titles are dropped
        ("Korea's leader", "Korea is leader"),  # a possessive is not a contraction
    ],
)
def test_normalisation_does_not_merge_different_words(a: str, b: str) -> None:
    assert normalised_words(a) != normalised_words(b)


def test_reordered_paragraphs_and_sentences_keep_similarity_one() -> None:
    text = SEED_TEXTS[WIRE[0]]
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    reordered = "\n\n".join(paragraphs[::-1])
    match = compare(reordered, "seed", text)
    assert match is not None
    assert match.similarity == 1.0
    sentences = "The ministry said so. Mr Kim agreed with it. South Korea urged the council to act at once."
    swapped = "Kim agreed with it. The ministry said so. South Korea urged the council to act at once."
    assert fingerprint(sentences).distinct.tolist() == fingerprint(swapped).distinct.tolist()


@dataclass
class _Settings:
    duplicate_threshold: float | None = None
    partial_threshold: float | None = None


def test_thresholds_from_settings() -> None:
    assert thresholds_from(_Settings()) == DuplicateThresholds()
    chosen = thresholds_from(_Settings(duplicate_threshold=0.7, partial_threshold=0.2))
    assert (chosen.duplicate_containment, chosen.partial_containment) == (0.7, 0.2)
    with pytest.raises(ValueError, match="partial_containment"):
        DuplicateThresholds(duplicate_containment=0.1, partial_containment=0.2)


def test_thresholds_change_verdicts() -> None:
    a, b = SEED_TEXTS[WIRE[0]], SEED_TEXTS[WIRE[2]]
    strict = DuplicateThresholds(duplicate_containment=0.9)
    match = compare(a, "b", b, strict)
    assert match is not None
    assert match.verdict == "partial"
    assert (
        compare(a, "b", b, DuplicateThresholds(partial_containment=0.95, duplicate_containment=0.95)) is None
    )


# Sketches


def test_sketch_is_compact_and_has_a_fixed_layout() -> None:
    long_text = "\n\n".join(SEED_TEXTS.values()) * 3
    record = sketch(long_text)
    assert len(record) <= 2048
    assert len(sketch(UNRELATED)) < len(record)
    assert sketch(SEED_TEXTS[WIRE[0]]) == sketch(SEED_TEXTS[WIRE[0]])
    with pytest.raises(ValueError, match="sketch"):
        SeedIndex().add("broken", b"\x00\x01garbage")
    with pytest.raises(ValueError, match="sketch"):
        SeedIndex().add("broken", record[:-1])


def test_sketch_is_the_same_in_another_process() -> None:
    code = (
        "import sys; from pathlib import Path; from workers.analysis.duplicates import sketch; "
        "sys.stdout.write(sketch(Path(sys.argv[1]).read_text(encoding='utf-8')).hex())"
    )
    path = ROOT / "seeds" / f"{WIRE[1]}.txt"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code, str(path)],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
        ).stdout
        for seed in ("1", "4242")
    }
    assert outputs == {sketch(SEED_TEXTS[WIRE[1]]).hex()}


# The index


def test_index_add_replace_discard_and_candidates() -> None:
    seeds = SeedIndex()
    for seed_id, text in SEED_TEXTS.items():
        seeds.add(seed_id, sketch(text))
    assert len(seeds) == 5
    assert WIRE[0] in seeds
    wire_query = sketch(SEED_TEXTS[WIRE[0]])
    candidates = seeds.candidates(wire_query)
    assert candidates[0] == WIRE[0]
    assert set(WIRE) <= set(candidates)
    assert RELATED not in candidates
    assert seeds.candidates(sketch(UNRELATED)) == []
    assert len(seeds.candidates(wire_query, limit=2)) == 2

    seeds.discard(WIRE[1])
    seeds.discard("never-added")
    assert len(seeds) == 4
    assert WIRE[1] not in seeds.candidates(wire_query)

    seeds.add(WIRE[2], sketch(SEED_TEXTS[RELATED]))  # re-adding an id replaces its sketch
    assert len(seeds) == 4
    assert WIRE[2] not in seeds.candidates(wire_query)
    assert set(seeds.candidates(sketch(SEED_TEXTS[RELATED]))) == {RELATED, WIRE[2]}
    assert seeds.memory_bytes() > 0


def test_index_survives_merges_and_compaction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SeedIndex, "_MERGE_MIN", 16)  # merge after a handful of seeds
    seeds = SeedIndex()
    for round_number in range(3):
        for seed_id, text in SEED_TEXTS.items():
            seeds.add(f"{seed_id}-{round_number}", sketch(text))
    for seed_id in SEED_TEXTS:
        seeds.discard(f"{seed_id}-0")
    assert len(seeds) == 10
    candidates = seeds.candidates(sketch(SEED_TEXTS[RELATED]))
    assert set(candidates) == {f"{RELATED}-1", f"{RELATED}-2"}


def test_find_duplicates_skips_seeds_removed_from_the_store(index: SeedIndex) -> None:
    def load_without_wire(ids: Sequence[str]) -> dict[str, str]:
        return {i: SEED_TEXTS[i] for i in ids if i != WIRE[1]}

    report = find_duplicates(SEED_TEXTS[WIRE[0]], index, load_without_wire)
    assert WIRE[1] not in {m.seed_id for m in report.matches}
    assert report.matches[0].seed_id == WIRE[0]


def test_empty_sketch_can_be_indexed() -> None:
    seeds = SeedIndex()
    seeds.add("empty", sketch(""))
    assert len(seeds) == 1
    assert seeds.candidates(sketch("")) == []
    assert seeds.candidates(sketch(UNRELATED)) == []


# Properties

_SENTENCES = [
    re.sub(r"\s+", " ", s).strip() + "." for s in re.split(r"[.!?]", UNRELATED + " " + OTHER_UNRELATED)
]
_SENTENCES = [s for s in _SENTENCES if len(s.split()) >= 5]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sampled_from(_SENTENCES), min_size=1, max_size=8),
    st.lists(st.sampled_from(_SENTENCES), min_size=1, max_size=8),
)
def test_passages_agree_on_any_texts(first: list[str], second: list[str]) -> None:
    a, b = " ".join(first), "\n\n".join(second)
    match = compare(a, "b", b, DuplicateThresholds(partial_containment=0.01, duplicate_containment=0.5))
    back = compare(b, "a", a, DuplicateThresholds(partial_containment=0.01, duplicate_containment=0.5))
    assert (match is None) == (back is None)
    if match is not None and back is not None:
        assert (match.similarity, match.containment) == (back.similarity, back.containment)
        assert_passages_agree(a, b, match)
    if set(first) == set(second):
        assert match is not None
        assert match.similarity == 1.0


def test_module_constants() -> None:
    assert duplicates.VERSION
    assert duplicates.SKETCH_SIZE * 4 + 8 <= 2048


@pytest.mark.timeout(20)  # 41 s before: each repeated shingle was paired with every repeat on the other side
def test_repetitive_texts_are_compared_without_pairing_every_repeat() -> None:
    match = duplicates.compare("US " * 66_000, "echo", "US " * 1_000)
    assert match is not None  # the figures still say how alike they are
    assert match.shared_passages == ()  # a shingle repeated 1,000 times anchors no passage


def test_a_shingle_repeated_past_the_cap_in_either_text_anchors_nothing_either_way() -> None:
    repeated = "Russia said the US was wrong about the sanctions on oil exports last week."
    other = "The Kremlin's spokesman Dmitry Peskov told reporters in Moscow that talks would go on."
    lead = "Mr. Lavrov won't meet the U.S. envoy, he's said, because of the co-operation row."
    article = " ".join([lead, repeated, repeated])
    seed = " ".join([repeated] * (duplicates.MAX_SHINGLE_REPEATS + 1) + [other])
    verdicts = [
        match.verdict if match else None
        for match in (compare(article, "seed", seed), compare(seed, "article", article))
    ]
    assert verdicts == [None, None]  # was None one way, `partial` (anchored by the repeats) the other


@pytest.mark.parametrize("space", ["\u00a0", "\t", "\u2009"])
def test_an_honorific_is_dropped_whatever_space_follows_it(space: str) -> None:
    text = "Mr Kim met Mr. Putin in Vladivostok on Wednesday for talks on weapons and food aid."
    assert normalised_words(text.replace(" ", space)) == normalised_words(text)


def test_a_sentence_repeated_a_few_times_still_anchors_passages() -> None:
    seed = "The talks in Geneva ended without an agreement on Sunday evening. " * 3
    match = duplicates.compare("Officials said so. " + seed, "thrice", seed)
    assert match is not None
    assert match.shared_passages


@pytest.mark.parametrize(("width", "other_width"), [(40, 60), (35, None), (72, None)])
def test_a_hard_wrapped_copy_is_the_same_text(width: int, other_width: int | None) -> None:
    text = SEED_TEXTS[WIRE[0]]

    def wrapped(columns: int) -> str:
        return "\n\n".join(textwrap.fill(p, columns) for p in text.split("\n") if p.strip())

    match = compare(wrapped(width), "seed", wrapped(other_width) if other_width else text)
    assert match is not None
    assert (match.verdict, match.similarity) == ("duplicate", 1.0)
