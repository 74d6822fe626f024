"""Near-duplicate quality and speed: realistic rewrites and hard negatives of news_corpus articles.

The whole corpus (news_corpus.jsonl) is indexed as seeds. Queries are made from corpus articles:

- rewrites, each expected to be a `duplicate` of its source: spelling (British <-> American), contractions,
  honorifics ("Mr Smith" <-> "Smith"), dropped paragraphs, added paragraphs, reordered sentences and
  paragraphs, outlet boilerplate (also as HTML), a changed headline, and `combined` (several at once, as
  the seed wire copies are);
- `excerpt`: two or three paragraphs of article A inside article B: `partial` against A, `duplicate` of B
  (B with paragraphs added);
- `hard_negative`: a rewrite of A, judged against the most similar other articles of the same day and topic
  (Reuters) or category (BBC): different stories that must not come out as duplicates.

Rewrites use this module's own variant rules, not the engine's normalisation table, so the spelling and
contraction cases measure how far that table reaches. Source articles come from two disjoint halves of
the corpus: TUNING (for choosing thresholds) and EVALUATION (for reporting), drawn with different seeds.
Pairs listed in natural_duplicates.jsonl are never counted as false positives (they are machine-found
and partly different stories), nor are the articles whose paragraphs a rewrite pasted in; the natural
pairs' own recall is reported separately.

    python -m newsdesk.evaluation.duplicates ../shared/data/news_corpus --split evaluation

Speed at scale (the index against brute force, seeds stored in Redis) is `newsdesk bench --only duplicates`
(newsdesk/bench/duplicates.py); `--scale` here runs that part.
"""

from __future__ import annotations

import json
import random
import re
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import blingfire
import numpy as np

from newsdesk.evaluation.records import NoExamples
from newsdesk.jsonl import read_records, required
from workers.analysis import duplicates
from workers.analysis.duplicates import DuplicateThresholds, SeedIndex

Split = Literal["tuning", "evaluation"]
Expected = Literal["duplicate", "partial", "none"]

SPLIT_SEEDS: dict[str, int] = {"tuning": 11, "evaluation": 29}
_POOL_SEED = 20240121
REWRITE_KINDS = (
    "spelling",
    "contractions",
    "honorifics",
    "dropped_paragraphs",
    "added_paragraphs",
    "reordered_sentences",
    "boilerplate",
    "headline",
    "combined",
)
CASE_KINDS = (*REWRITE_KINDS, "excerpt", "hard_negative")
MIN_SOURCE_WORDS = 50


@dataclass(frozen=True)
class Article:
    id: str
    title: str
    text: str
    source: str
    day: str  # Reuters: the date; BBC: empty
    topics: frozenset[str]  # Reuters topics or the BBC category

    @property
    def paragraphs(self) -> list[str]:
        return [p for p in self.text.split("\n\n") if p.strip()]


@dataclass
class Case:
    kind: str
    query: str
    expected: dict[str, Expected] = field(default_factory=dict)
    # Seeds whose paragraphs were pasted into the query: whatever it matches them as is not counted.
    borrowed: set[str] = field(default_factory=set)


def load_corpus(corpus_dir: Path) -> list[Article]:
    """The articles of news_corpus.jsonl."""
    path = corpus_dir / "news_corpus.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: the evaluation needs the shared news corpus")
    articles = []
    for number, record in read_records(path):
        where = f"{path}:{number}"
        meta = record.get("meta") or {}
        topics = meta.get("topics") or ([meta["category"]] if meta.get("category") else [])
        articles.append(
            Article(
                id=required(record, "id", str, where),
                title=record.get("title") or "",
                text=required(record, "text", str, where),
                source=record.get("source") or "",
                day=(record.get("date") or "").split(" ")[0],
                topics=frozenset(topics),
            )
        )
    return articles


def load_natural_pairs(corpus_dir: Path) -> list[dict[str, Any]]:
    """natural_duplicates.jsonl: {id_a, id_b, kind, ...}; an `exact` pair carries b's text as `b`."""
    path = corpus_dir / "natural_duplicates.jsonl"
    pairs = []
    for number, record in read_records(path):
        for key in ("id_a", "id_b", "kind"):
            required(record, key, str, f"{path}:{number}")
        pairs.append(record)
    return pairs


# --------------------------------------------------------------------------------------------------------
# Rewrites (the evaluation's own variant rules)

_SPELLING_PAIRS = [  # (American, British)
    ("defense", "defence"),
    ("offense", "offence"),
    ("center", "centre"),
    ("centers", "centres"),
    ("theater", "theatre"),
    ("meter", "metre"),
    ("meters", "metres"),
    ("liter", "litre"),
    ("color", "colour"),
    ("labor", "labour"),
    ("favor", "favour"),
    ("favorite", "favourite"),
    ("honor", "honour"),
    ("neighbor", "neighbour"),
    ("neighbors", "neighbours"),
    ("behavior", "behaviour"),
    ("rumor", "rumour"),
    ("rumors", "rumours"),
    ("harbor", "harbour"),
    ("program", "programme"),
    ("programs", "programmes"),
    ("gray", "grey"),
    ("traveled", "travelled"),
    ("traveling", "travelling"),
    ("canceled", "cancelled"),
    ("labeled", "labelled"),
    ("modeling", "modelling"),
    ("fueled", "fuelled"),
    ("signaled", "signalled"),
    ("jewelry", "jewellery"),
    ("aluminum", "aluminium"),
    ("skeptical", "sceptical"),
    ("judgment", "judgement"),
    ("aging", "ageing"),
    ("catalog", "catalogue"),
    ("analyze", "analyse"),
    ("analyzed", "analysed"),
    ("paralyzed", "paralysed"),
    ("license", "licence"),
    ("maneuver", "manoeuvre"),
    ("fulfill", "fulfil"),
    ("enrollment", "enrolment"),
    ("installment", "instalment"),
    ("percent", "per cent"),
    ("cooperation", "co-operation"),
    ("coordinate", "co-ordinate"),
    ("coordinated", "co-ordinated"),
    ("reelected", "re-elected"),
]
_TO_BRITISH = {american: british for american, british in _SPELLING_PAIRS}
_TO_AMERICAN = {british: american for american, british in _SPELLING_PAIRS}
_ISE_EXCEPTIONS = frozenset(
    [
        "advise",
        "advertise",
        "arise",
        "chastise",
        "circumcise",
        "comprise",
        "compromise",
        "demise",
        "despise",
        "devise",
        "disguise",
        "enterprise",
        "excise",
        "exercise",
        "franchise",
        "improvise",
        "incise",
        "merchandise",
        "premise",
        "promise",
        "revise",
        "rise",
        "supervise",
        "surmise",
        "surprise",
        "televise",
        "wise",
        "otherwise",
        "noise",
        "poise",
        "praise",
        "raise",
        "appraise",
        "treatise",
        "expertise",
        "paradise",
        "concise",
        "precise",
        "reprise",
        "cruise",
        "bruise",
        "anise",
        "guise",
        "mortise",
    ]
)
_IZE = re.compile(r"\b([A-Za-z]{2,})([iy])z(e|ed|es|ing|ation|ations|er|ers)\b")
_ISE = re.compile(r"\b([A-Za-z]{2,})([iy])s(e|ed|es|ing|ation|ations|er|ers)\b")
_PAIR_FORMS = re.compile(
    r"\b(?:"
    + "|".join(re.escape(w) for w in sorted({*_TO_BRITISH, *_TO_AMERICAN}, key=len, reverse=True))
    + r")\b",
    re.IGNORECASE,
)

_CONTRACTIONS = [
    ("did not", "didn't"),
    ("does not", "doesn't"),
    ("do not", "don't"),
    ("is not", "isn't"),
    ("are not", "aren't"),
    ("was not", "wasn't"),
    ("were not", "weren't"),
    ("has not", "hasn't"),
    ("have not", "haven't"),
    ("had not", "hadn't"),
    ("will not", "won't"),
    ("would not", "wouldn't"),
    ("could not", "couldn't"),
    ("should not", "shouldn't"),
    ("cannot", "can't"),
    ("it is", "it's"),
    ("that is", "that's"),
    ("there is", "there's"),
    ("he is", "he's"),
    ("she is", "she's"),
    ("we are", "we're"),
    ("they are", "they're"),
    ("I am", "I'm"),
    ("we will", "we'll"),
    ("they will", "they'll"),
    ("it will", "it'll"),
    ("we have", "we've"),
    ("they have", "they've"),
    ("he has been", "he's been"),
    ("it has been", "it's been"),
]
_HONORIFIC = re.compile(r"\b(?:Mr|Mrs|Ms|Dr)\.? (?=[A-Z])")
_FULL_NAME = re.compile(r"(?<![.!?]\s)\b([A-Z][a-z]+) ([A-Z][a-z]{2,})\b")

_BOILERPLATE_TOP = [
    "Follow us on Twitter",
    "Image Source : REUTERS/FILE {caption}",
    "{caption} / Photo: AP",
    "date 2024-01-21",
    "WORLD",
    "January 21, 2024",
    "Advertisement",
]
_BOILERPLATE_BOTTOM = [
    "SOURCE:AP",
    "(With inputs from agencies)",
    "Also Read: {headline}",
    "Read more: {headline}",
    "Follow us on Facebook",
    "This article was originally published by The Conversation. Read the original article.",
    "(Reporting by Jane Doe; Editing by John Smith)",
    "© 2024 All rights reserved",
]


def _rng(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - reproducible sampling, not secrets


def _sentences(paragraph: str) -> list[str]:
    return [s for s in blingfire.text_to_sentences(paragraph).split("\n") if s.strip()]


def _word_count(text: str) -> int:
    return len(text.split())


def _match_case(template: str, replacement: str) -> str:
    if template.isupper() and len(template) > 1:
        return replacement.upper()
    if template[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def rewrite_spelling(text: str, rng: random.Random) -> str:
    """Swap British and American spellings, most (80%) in one direction per article, as a copy desk would."""
    forms = [w.lower() for w in _PAIR_FORMS.findall(text)]
    american = sum(w in _TO_BRITISH for w in forms) + len(_IZE.findall(text))
    british = sum(w in _TO_AMERICAN for w in forms) + len(_ISE.findall(text))
    to_british = american >= british
    pairs = _TO_BRITISH if to_british else _TO_AMERICAN

    def swap_word(match: re.Match[str]) -> str:
        word = match.group()
        target = pairs.get(word.lower())
        return _match_case(word, target) if target and rng.random() < 0.8 else word

    def swap_suffix(match: re.Match[str]) -> str:
        stem, vowel, suffix = match.groups()
        if (stem + vowel + "se").lower() in _ISE_EXCEPTIONS or rng.random() >= 0.8:
            return match.group()
        return stem + vowel + ("s" if to_british else "z") + suffix

    text = _PAIR_FORMS.sub(swap_word, text)
    return (_IZE if to_british else _ISE).sub(swap_suffix, text)


def rewrite_contractions(text: str, rng: random.Random) -> str:
    """Contract or expand (each occurrence with probability 0.8), with straight or curly apostrophes."""
    apostrophe = "’" if rng.random() < 0.5 else "'"
    other: dict[str, str] = {}
    for full, short in _CONTRACTIONS:
        other[full.lower()] = short.replace("'", apostrophe)
        other[short.lower()] = full
        other[short.lower().replace("'", "’")] = full
    pattern = re.compile(
        r"\b(?:" + "|".join(re.escape(form) for form in sorted(other, key=len, reverse=True)) + r")\b",
        re.IGNORECASE,
    )

    def swap(match: re.Match[str]) -> str:
        form = match.group()
        return _match_case(form, other[form.lower()]) if rng.random() < 0.8 else form

    return pattern.sub(swap, text)


def rewrite_honorifics(text: str, rng: random.Random) -> str:
    """Drop "Mr"/"Ms" before names if the text has them; otherwise add "Mr" to later mentions of surnames."""
    if _HONORIFIC.search(text):
        return _HONORIFIC.sub(lambda m: "" if rng.random() < 0.9 else m.group(), text)
    first_seen: dict[str, int] = {}
    for match in _FULL_NAME.finditer(text):
        first_seen.setdefault(match.group(2), match.end())
    pieces, position = [], 0
    for match in re.finditer(r"\b[A-Z][a-z]{2,}\b", text):
        name = match.group()
        before = text[: match.start()].split()[-1:]
        after_name = bool(before) and before[0][:1].isupper() and not before[0].endswith((".", ":"))
        if name in first_seen and match.start() > first_seen[name] and not after_name and rng.random() < 0.9:
            pieces.append(text[position : match.start()] + "Mr ")
            position = match.start()
    return "".join(pieces) + text[position:]


def rewrite_drop_paragraphs(text: str, rng: random.Random) -> str:
    """Drop paragraphs (never the first), or sentences of a story of under four paragraphs, at random
    while at most a quarter of the words go, as an outlet trims a wire story to fit."""
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    if len(paragraphs) >= 4:
        pieces, joiner = paragraphs, "\n\n"
    else:
        pieces, joiner = [s for p in paragraphs for s in _sentences(p)], " "
    budget = _word_count(text) // 4
    dropped: set[int] = set()
    for index in rng.sample(range(1, len(pieces)), len(pieces) - 1):
        if _word_count(pieces[index]) <= budget:
            budget -= _word_count(pieces[index])
            dropped.add(index)
            if rng.random() < 0.5:
                break
    return joiner.join(piece for i, piece in enumerate(pieces) if i not in dropped)


def rewrite_add_paragraphs(
    text: str, rng: random.Random, filler: Sequence[tuple[str, str]], borrowed: set[str]
) -> str:
    """Insert one or two paragraphs of other articles (their ids go into `borrowed`), at most 30% of the
    result's words."""
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    budget = int(_word_count(text) * 0.3 / 0.7)
    for _ in range(rng.randint(1, 2)):
        candidates = [(i, p) for i, p in filler if _word_count(p) <= budget]
        if not candidates:
            break
        source, extra = rng.choice(candidates)
        borrowed.add(source)
        budget -= _word_count(extra)
        paragraphs.insert(rng.randint(1, len(paragraphs)), extra)
    return "\n\n".join(paragraphs)


def rewrite_reorder(text: str, rng: random.Random) -> str:
    """Swap a few adjacent sentences inside paragraphs and move one paragraph."""
    paragraphs = [_sentences(p) for p in text.split("\n\n") if p.strip()]
    for sentences in paragraphs:
        for i in range(len(sentences) - 1):
            if rng.random() < 0.4:
                sentences[i], sentences[i + 1] = sentences[i + 1], sentences[i]
    if len(paragraphs) >= 3:
        moved = paragraphs.pop(rng.randrange(1, len(paragraphs)))
        paragraphs.insert(rng.randrange(1, len(paragraphs) + 1), moved)
    elif len(paragraphs) == 1 and len(paragraphs[0]) >= 3:
        sentences = paragraphs[0]
        sentences.insert(rng.randrange(0, len(sentences)), sentences.pop(rng.randrange(1, len(sentences))))
    return "\n\n".join(" ".join(sentences) for sentences in paragraphs)


def rewrite_boilerplate(text: str, rng: random.Random, headlines: Sequence[str]) -> str:
    """Add outlet boilerplate lines at the top and bottom; one time in four, wrap it all in HTML."""

    def fill(line: str) -> str:
        caption = rng.choice(headlines) + " at the meeting in the capital."
        return line.format(caption=caption, headline=rng.choice(headlines))

    top = [fill(line) for line in rng.sample(_BOILERPLATE_TOP, rng.randint(1, 2))]
    bottom = [fill(line) for line in rng.sample(_BOILERPLATE_BOTTOM, rng.randint(1, 2))]
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    if rng.random() < 0.25:
        body = "".join(f"<p>{p}</p>\n" for p in paragraphs)
        return (
            "<html><head><title>News</title></head><body><nav>Home | World | Business</nav>\n"
            + "".join(f"<p>{line}</p>\n" for line in top)
            + body
            + "".join(f"<p>{line}</p>\n" for line in bottom)
            + "<footer>Contact us</footer></body></html>"
        )
    return "\n\n".join([*top, *paragraphs, *bottom])


def rewrite_headline(text: str, rng: random.Random, title: str, headlines: Sequence[str]) -> str:
    """Put a headline on top: the story's own title recased or shortened, or another outlet's wording."""
    words = title.split()
    options = [
        title.title(),
        title.capitalize(),
        " ".join(words[: max(3, len(words) - 2)]).capitalize(),
        rng.choice(headlines).capitalize(),
    ]
    headline = rng.choice(options)
    kicker = [rng.choice(["WORLD", "Business", "Politics", "Markets"])] if rng.random() < 0.3 else []
    return "\n".join([*kicker, headline, ""]) + "\n" + text


def rewrite(
    kind: str,
    article: Article,
    rng: random.Random,
    filler: Sequence[tuple[str, str]],
    headlines: Sequence[str],
    borrowed: set[str] | None = None,
) -> str:
    """One rewrite of the given kind; the ids of articles it takes paragraphs from go into `borrowed`."""
    borrowed = set() if borrowed is None else borrowed
    text = article.text
    simple: dict[str, Callable[[], str]] = {
        "spelling": lambda: rewrite_spelling(text, rng),
        "contractions": lambda: rewrite_contractions(text, rng),
        "honorifics": lambda: rewrite_honorifics(text, rng),
        "dropped_paragraphs": lambda: rewrite_drop_paragraphs(text, rng),
        "added_paragraphs": lambda: rewrite_add_paragraphs(text, rng, filler, borrowed),
        "reordered_sentences": lambda: rewrite_reorder(text, rng),
        "boilerplate": lambda: rewrite_boilerplate(text, rng, headlines),
        "headline": lambda: rewrite_headline(text, rng, article.title, headlines),
    }
    if kind in simple:
        return simple[kind]()
    if kind == "combined":
        text = rewrite_spelling(text, rng)
        text = rewrite_contractions(text, rng)
        text = rewrite_honorifics(text, rng)
        edit = rng.choice(["drop", "add", "both"])
        if edit in {"drop", "both"}:
            text = rewrite_drop_paragraphs(text, rng)
        if edit in {"add", "both"}:
            text = rewrite_add_paragraphs(text, rng, filler, borrowed)
        if rng.random() < 0.5:
            text = rewrite_reorder(text, rng)
        text = rewrite_headline(text, rng, article.title, headlines)
        return rewrite_boilerplate(text, rng, headlines)
    raise ValueError(f"unknown rewrite {kind!r}")


# --------------------------------------------------------------------------------------------------------
# Cases

_STOPWORDS = frozenset(
    [
        "the",
        "a",
        "an",
        "and",
        "or",
        "of",
        "to",
        "in",
        "on",
        "for",
        "with",
        "by",
        "at",
        "from",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "has",
        "have",
        "had",
        "it",
        "its",
        "this",
        "that",
        "said",
        "says",
        "will",
        "would",
        "could",
        "should",
        "not",
        "but",
        "also",
        "than",
        "more",
        "which",
        "who",
        "their",
        "they",
        "he",
        "she",
        "his",
        "her",
        "we",
        "our",
        "after",
        "before",
        "over",
        "about",
        "into",
        "up",
        "out",
        "new",
        "year",
        "years",
        "last",
        "first",
        "two",
        "one",
        "mln",
        "dlrs",
        "pct",
        "vs",
        "reuter",
    ]
)


def _content_words(text: str) -> frozenset[str]:
    return frozenset(w for w in re.findall(r"[a-z]{3,}", text.lower()) if w not in _STOPWORDS)


def _split_pools(articles: Sequence[Article]) -> dict[str, list[Article]]:
    """Two disjoint halves of the eligible articles, stratified by source."""
    pools: dict[str, list[Article]] = {"tuning": [], "evaluation": []}
    rng = _rng(_POOL_SEED)
    by_source: dict[str, list[Article]] = defaultdict(list)
    for article in articles:
        if _word_count(article.text) >= MIN_SOURCE_WORDS:
            by_source[article.source].append(article)
    for source in sorted(by_source):
        group = sorted(by_source[source], key=lambda a: a.id)
        rng.shuffle(group)
        half = len(group) // 2
        pools["tuning"].extend(group[:half])
        pools["evaluation"].extend(group[half:])
    return pools


def _natural_partners(pairs: Sequence[dict[str, Any]]) -> dict[str, set[str]]:
    partners: dict[str, set[str]] = defaultdict(set)
    for pair in pairs:
        partners[pair["id_a"]].add(pair["id_b"])
        partners[pair["id_b"]].add(pair["id_a"])
    return partners


class _HardNegatives:
    """For an article, the most similar other articles of its day and topic (Reuters) or category (BBC)."""

    def __init__(self, articles: Sequence[Article], partners: dict[str, set[str]]) -> None:
        self.partners = partners
        self.words = {a.id: _content_words(a.text) for a in articles}
        self.groups: dict[tuple[str, str], list[Article]] = defaultdict(list)
        for article in articles:
            self.groups[(article.source, article.day)].append(article)

    def find(self, article: Article, count: int = 3) -> list[str]:
        mine = self.words[article.id]
        scored = []
        for other in self.groups[(article.source, article.day)]:
            if other.id == article.id or other.id in self.partners.get(article.id, ()):
                continue
            if article.topics and other.topics and not article.topics & other.topics:
                continue
            theirs = self.words[other.id]
            union = len(mine | theirs)
            if union:
                scored.append((len(mine & theirs) / union, other.id))
        scored.sort(reverse=True)
        return [other_id for score, other_id in scored[:count] if score > 0.05]


def build_cases(
    articles: Sequence[Article],
    natural_pairs: Sequence[dict[str, Any]],
    split: Split = "evaluation",
    per_kind: int = 150,
) -> list[Case]:
    """The query cases of one split: `per_kind` of each kind in CASE_KINDS, from the split's articles only."""
    pool = _split_pools(articles)[split]
    rng = _rng(SPLIT_SEEDS[split])
    filler = [
        (a.id, p) for a in rng.sample(pool, min(500, len(pool))) for p in a.paragraphs if _word_count(p) >= 15
    ]
    headlines = [a.title for a in rng.sample(pool, min(500, len(pool))) if a.title]
    partners = _natural_partners(natural_pairs)
    negatives = _HardNegatives(articles, partners)
    by_id = {a.id: a for a in articles}
    cases: list[Case] = []
    for kind in REWRITE_KINDS:
        for article in rng.sample(pool, min(per_kind, len(pool))):  # a small corpus gives what it has
            borrowed: set[str] = set()
            query = rewrite(kind, article, rng, filler, headlines, borrowed)
            cases.append(Case(kind, query, {article.id: "duplicate"}, borrowed - {article.id}))
    # Excerpts: 2-3 paragraphs (at most 35% of A) inside a longer B.
    long_articles = [a for a in pool if len(a.paragraphs) >= 6]
    made = attempts = 0
    # Bounded: in a small corpus every pair may be natural partners, or every excerpt too long.
    while made < per_kind and len(long_articles) >= 2 and attempts < 100 * per_kind:
        attempts += 1
        source, host = rng.sample(long_articles, 2)
        if host.id in partners.get(source.id, ()):
            continue
        paragraphs = source.paragraphs
        count = rng.randint(2, 3)
        begin = rng.randrange(0, len(paragraphs) - count + 1)
        excerpt = paragraphs[begin : begin + count]
        words = sum(_word_count(p) for p in excerpt)
        if words > 0.35 * _word_count(source.text) or words > 0.5 * _word_count(host.text):
            continue
        host_paragraphs = host.paragraphs
        at = rng.randint(1, len(host_paragraphs))
        query = "\n\n".join([*host_paragraphs[:at], *excerpt, *host_paragraphs[at:]])
        cases.append(Case("excerpt", query, {source.id: "partial", host.id: "duplicate"}))
        made += 1
    # Hard negatives: a combined rewrite of A against its closest same-day, same-topic stories.
    made = 0
    for article in rng.sample(pool, len(pool)):
        if made == per_kind:
            break
        others = negatives.find(article)
        if not others:
            continue
        borrowed = set()
        query = rewrite("combined", article, rng, filler, headlines, borrowed)
        expected: dict[str, Expected] = {article.id: "duplicate"}
        expected.update({other: "none" for other in others if other in by_id and other not in borrowed})
        cases.append(Case("hard_negative", query, expected, borrowed - set(expected)))
        made += 1
    return cases


# --------------------------------------------------------------------------------------------------------
# Running


def index_corpus(articles: Sequence[Article]) -> tuple[SeedIndex, dict[str, float]]:
    """Sketch and index every article; returns the index and the sketch and build figures."""
    started = time.perf_counter()
    sketches = duplicates.sketch_many(a.text for a in articles)
    sketch_seconds = time.perf_counter() - started
    index = SeedIndex()
    started = time.perf_counter()
    for article, record in zip(articles, sketches, strict=True):
        index.add(article.id, record)
    index.candidates(sketches[0])  # settle the recent additions before timing queries
    build_seconds = time.perf_counter() - started
    sizes = [len(record) for record in sketches]
    return index, {
        "seeds": len(articles),
        "sketch_seconds": round(sketch_seconds, 2),
        "sketches_per_second": round(len(articles) / sketch_seconds, 1),
        "index_build_seconds": round(build_seconds, 2),
        "sketch_bytes_mean": round(statistics.fmean(sizes), 1),
        "sketch_bytes_max": max(sizes),
        "index_bytes_per_seed": round(index.memory_bytes() / len(articles), 1),
    }


def _loader(texts: dict[str, str]) -> Callable[[Sequence[str]], dict[str, str]]:
    """load_texts for find_duplicates over an in-memory corpus (the service reads Redis instead)."""

    def load(ids: Sequence[str]) -> dict[str, str]:
        return {seed_id: texts[seed_id] for seed_id in ids if seed_id in texts}

    return load


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def run_cases(
    cases: Sequence[Case],
    index: SeedIndex,
    texts: dict[str, str],
    partners: dict[str, set[str]],
    thresholds: DuplicateThresholds | None = None,
) -> dict[str, Any]:
    """Run every case through find_duplicates; precision and recall of each verdict per case kind."""
    load = _loader(texts)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    timings: list[float] = []
    misses: list[dict[str, Any]] = []
    false_duplicates: list[dict[str, Any]] = []
    for case in cases:
        started = time.perf_counter()
        report = duplicates.find_duplicates(case.query, index, load, thresholds)
        timings.append((time.perf_counter() - started) * 1000)
        found = {m.seed_id: m for m in report.matches}
        known = set(case.expected)
        ignored = ({p for seed_id in known for p in partners.get(seed_id, ())} | case.borrowed) - known
        tally = counts[case.kind]
        for seed_id, expected in case.expected.items():
            match = found.get(seed_id)
            verdict = match.verdict if match else "none"
            tally[f"expected_{expected}"] += 1
            tally[f"{expected}_as_{verdict}"] += 1
            if verdict != expected and len(misses) < 200:
                misses.append(
                    {
                        "kind": case.kind,
                        "seed_id": seed_id,
                        "expected": expected,
                        "got": verdict,
                        "similarity": match.similarity if match else None,
                        "containment": match.containment if match else None,
                    }
                )
        for seed_id, match in found.items():
            if seed_id not in known and seed_id not in ignored:
                tally[f"unexpected_{match.verdict}"] += 1
                if match.verdict == "duplicate":
                    source = next(s for s, e in case.expected.items() if e == "duplicate")
                    false_duplicates.append(
                        {
                            "kind": case.kind,
                            "source": source,
                            "seed_id": seed_id,
                            "similarity": match.similarity,
                            "containment": match.containment,
                        }
                    )
    per_kind: dict[str, Any] = {}
    total: dict[str, int] = defaultdict(int)
    for kind in CASE_KINDS:
        if kind not in counts:
            continue
        tally = counts[kind]
        for key, value in tally.items():
            total[key] += value
        per_kind[kind] = _summary(tally)
    return {
        "queries": len(cases),
        "per_kind": per_kind,
        "all": _summary(total),
        "ms_per_query": {
            "mean": round(statistics.fmean(timings), 2),
            "p50": round(statistics.median(timings), 2),
            "p95": round(float(np.percentile(timings, 95)), 2),
            "max": round(max(timings), 2),
        },
        "misses": misses,
        "false_duplicates": false_duplicates,
    }


def _summary(tally: dict[str, int]) -> dict[str, Any]:
    """duplicate precision/recall; partial recall; what the expected non-matches came out as."""
    true_dup = tally["duplicate_as_duplicate"]
    false_dup = tally["partial_as_duplicate"] + tally["none_as_duplicate"] + tally["unexpected_duplicate"]
    summary: dict[str, Any] = {
        "duplicate_precision": _ratio(true_dup, true_dup + false_dup),
        "duplicate_recall": _ratio(true_dup, tally["expected_duplicate"]),
        "expected_duplicates": tally["expected_duplicate"],
        "false_duplicates": false_dup,
        "duplicates_found_as_partial": tally["duplicate_as_partial"],
    }
    if tally["expected_partial"]:
        true_partial = tally["partial_as_partial"]
        summary["partial_recall"] = _ratio(true_partial, tally["expected_partial"])
        summary["partial_precision"] = _ratio(
            true_partial, true_partial + tally["duplicate_as_partial"] + tally["none_as_partial"]
        )
        summary["expected_partials"] = tally["expected_partial"]
    if tally["expected_none"]:
        summary["hard_negative_pairs"] = tally["expected_none"]
        summary["hard_negatives_as_duplicate"] = tally["none_as_duplicate"]
        summary["hard_negatives_as_partial"] = tally["none_as_partial"]
    summary["other_seeds_reported_partial"] = tally["unexpected_partial"]
    return summary


def natural_duplicate_recall(
    pairs: Sequence[dict[str, Any]],
    index: SeedIndex,
    texts: dict[str, str],
    thresholds: DuplicateThresholds | None = None,
) -> dict[str, Any]:
    """For each natural pair: is a found from b's text (exact pairs carry b's text; near pairs are both
    in the corpus)? Counted as found at all and as `duplicate`, per kind. A pair naming an article the
    corpus lacks (a corpus cut down, or another one) is left out and counted as `not_in_corpus`."""
    load = _loader(texts)
    result: dict[str, Any] = {}
    missed = []
    for kind in ("exact", "near"):
        of_kind = [p for p in pairs if p["kind"] == kind]
        chosen = [p for p in of_kind if p["id_a"] in texts and ("b" in p or p["id_b"] in texts)]
        found = as_duplicate = 0
        for pair in chosen:
            query = pair["b"]["text"] if "b" in pair else texts[pair["id_b"]]
            report = duplicates.find_duplicates(query, index, load, thresholds)
            match = next((m for m in report.matches if m.seed_id == pair["id_a"]), None)
            found += match is not None
            as_duplicate += match is not None and match.verdict == "duplicate"
            if match is None:
                missed.append({k: pair.get(k) for k in ("id_a", "id_b", "jaccard_w5", "containment_w5")})
        result[kind] = {
            "pairs": len(chosen),
            "found": _ratio(found, len(chosen)),
            "found_as_duplicate": _ratio(as_duplicate, len(chosen)),
        }
        if len(chosen) < len(of_kind):
            result[kind]["not_in_corpus"] = len(of_kind) - len(chosen)
    result["missed"] = missed
    return result


def evaluate_duplicates(
    corpus_dir: Path,
    *,
    split: Split = "evaluation",
    per_kind: int = 150,
    thresholds: DuplicateThresholds | None = None,
    natural: bool = True,
) -> dict[str, Any]:
    """Index the whole corpus, run the split's cases and the natural pairs; all figures in one dict."""
    articles = load_corpus(corpus_dir)
    pairs = load_natural_pairs(corpus_dir)
    texts = {a.id: a.text for a in articles}
    index, build = index_corpus(articles)
    cases = build_cases(articles, pairs, split, per_kind)
    if not cases:
        raise NoExamples(f"{corpus_dir}: no query cases could be built from {len(articles)} articles")
    result: dict[str, Any] = {
        "split": split,
        "version": duplicates.VERSION,
        "thresholds": vars(thresholds or DuplicateThresholds()),
        "index": build,
        "cases": run_cases(cases, index, texts, _natural_partners(pairs), thresholds),
    }
    titles = {a.id: a.title for a in articles}
    for item in result["cases"]["false_duplicates"]:
        item["titles"] = [titles[item["source"]], titles[item["seed_id"]]]
    if natural:
        result["natural_duplicates"] = natural_duplicate_recall(pairs, index, texts, thresholds)
    return result


def pair_measures(corpus_dir: Path, *, split: Split = "tuning", per_kind: int = 150) -> list[dict[str, Any]]:
    """Exact similarity and containment of every labelled pair of a split (for choosing thresholds)."""
    articles = load_corpus(corpus_dir)
    pairs = load_natural_pairs(corpus_dir)
    texts = {a.id: a.text for a in articles}
    loose = DuplicateThresholds(
        duplicate_containment=1.0, duplicate_similarity=1.0, partial_containment=1e-9, min_passage_words=1
    )
    rows = []
    for case in build_cases(articles, pairs, split, per_kind):
        query = duplicates.fingerprint(case.query)
        for seed_id, expected in case.expected.items():
            match = duplicates.compare_fingerprints(
                query, seed_id, duplicates.fingerprint(texts[seed_id]), loose
            )
            passage = (
                max(
                    (
                        len(duplicates.normalised_words(case.query[p.start : p.end]))
                        for p in match.shared_passages
                    ),
                    default=0,
                )
                if match
                else 0
            )
            rows.append(
                {
                    "kind": case.kind,
                    "expected": expected,
                    "similarity": match.similarity if match else 0.0,
                    "containment": match.containment if match else 0.0,
                    "longest_passage": passage,
                }
            )
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    """python -m newsdesk.evaluation.duplicates [corpus_dir] [--split S] [--scale | --pair-measures]."""
    import argparse  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("corpus_dir", nargs="?", type=Path, default=Path("../shared/data/news_corpus"))
    parser.add_argument("--split", choices=["tuning", "evaluation"], default="evaluation")
    parser.add_argument("--per-kind", type=int, default=150)
    parser.add_argument(
        "--scale", action="store_true", help="time the index against brute force: newsdesk bench's part"
    )
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument(
        "--pair-measures",
        action="store_true",
        help="print the measures of every labelled pair (threshold tuning)",
    )
    args = parser.parse_args(argv)
    if not (args.corpus_dir / "news_corpus.jsonl").exists():
        parser.exit(
            2, f"{args.corpus_dir}/news_corpus.jsonl not found: this evaluation needs the news corpus\n"
        )
    if args.pair_measures:
        print(json.dumps(pair_measures(args.corpus_dir, split=args.split, per_kind=args.per_kind), indent=1))
    elif args.scale:
        from newsdesk.bench.runner import BenchOptions, run_bench  # noqa: PLC0415 - the bench imports this module

        sizes = [int(s) for s in args.sizes.split(",")]
        options = BenchOptions(parts=["duplicates"], seed_sizes=sizes, data_dir=args.corpus_dir.parent)
        print(run_bench(options).to_json())
    else:
        result = evaluate_duplicates(args.corpus_dir, split=args.split, per_kind=args.per_kind)
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
