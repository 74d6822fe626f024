"""Extractive summary: pick the article's most representative sentences, keep them whole and in order."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction

from workers.analysis.text import Document, Sentence, prepare

VERSION = "summary-3"  # 3: datelines before a colon are leads; hard-wrapped text read in paragraphs

DEFAULT_SENTENCES = 3
MAX_SENTENCES = 20
# Chosen on articles 1-50 of cnndm_realsumm100 (51-100 held out); see README "Measured figures".
_MIN_WORDS = 10  # shorter "sentences" are fragments, datelines and "Scroll down for video."
_CENTRALITY_WEIGHT = 0.2
_POSITION_DECAY = 2.0
_NEAR_REPEAT = 0.7
# Photo captions and "Label : text" teasers are written for a picture, not the story.
_CAPTION = re.compile(
    r"\((?:\s*(?:pictured|picture|photo|file photo|left|right|above|below|centre|center|inset))+\s*\)"
    r"|\bpictured\b",
    re.IGNORECASE,
)
_LABEL = re.compile(r"^(?P<label>[^:]{1,40}?)\s?:\s")
# What makes "X: ..." a sentence rather than a teaser's label ("Also Read:", "WATCH:"): a verb ("The
# message was clear:", "Jaishankar said:"), or a dateline in capitals ("NEW DELHI:", "MOSCOW, Jan 21:").
_LABEL_VERB = re.compile(r"\b(?:said|says|told|was|were|is|are|added|wrote|stated|declared)\b")
_DATELINE = re.compile(r"[A-Z][A-Z.'’ -]+(?:,\s+[A-Z][a-z]{2,}\.?\s+\d{1,2})?")
# Words of a capitals label that make it a teaser, not a dateline ("JUST IN:", "TOP STORY:"); "NEW" alone too.
_TEASER_WORDS = frozenset(
    [
        "WATCH",
        "READ",
        "VIDEO",
        "VIDEOS",
        "PHOTO",
        "PHOTOS",
        "PICTURES",
        "LISTEN",
        "LIVE",
        "BREAKING",
        "JUST",
        "LATEST",
        "ALERT",
        "UPDATE",
        "UPDATES",
        "UPDATED",
        "EXCLUSIVE",
        "OPINION",
        "ANALYSIS",
        "EXPLAINER",
        "RELATED",
        "SPONSORED",
        "ADVERTISEMENT",
        "EDITOR'S",
        "NOTE",
        "FACT",
        "CHECK",
        "TOP",
        "MUST",
        "MORE",
        "ALSO",
        "SEE",
    ]
)
_TOKEN = re.compile(r"[^\W\d_]{2,}")
# Function words carry no topic; without them centrality measures content overlap.
_STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "also",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "out",
        "over",
        "own",
        "said",
        "same",
        "says",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
    ]
)


@dataclass(frozen=True, slots=True)
class SummarySentence:
    text: str
    start: int
    end: int
    score: float


@dataclass(frozen=True, slots=True)
class Summary:
    sentences: tuple[SummarySentence, ...]

    @property
    def text(self) -> str:
        return " ".join(sentence.text for sentence in self.sentences)


def summarize(text: str | Document, *, sentences: int | None = None, ratio: float | None = None) -> Summary:
    """Choose `sentences` sentences (or `ratio` of them) that best cover the article, in original order.

    A sentence's score mixes its similarity to the whole article (centrality) with a prior for early
    sentences, because news puts the essentials first; near-repeats of a chosen sentence are skipped.
    """
    doc = text if isinstance(text, Document) else prepare(text)
    # A text of nothing but headline-like lines (no closing punctuation: a one-line flash, a list of
    # bullet points) is summarised from those lines rather than not at all.
    body = list(doc.body_sentences) or list(doc.sentences)
    if not body:
        return Summary(())
    wanted = _wanted_count(len(body), sentences, ratio)
    vectors = [_term_vector(s.text) for s in body]
    centroid: Counter[str] = Counter()
    for vector in vectors:
        centroid.update(vector)
    candidates = [i for i, s in enumerate(body) if _is_candidate(s.text)]
    scores = [0.0] * len(body)
    centroid_norm = _norm(centroid)  # once: the centroid holds every term of the article
    for rank, index in enumerate(candidates):
        scores[index] = _CENTRALITY_WEIGHT * _cosine(vectors[index], centroid, centroid_norm) + (
            1 - _CENTRALITY_WEIGHT
        ) * _position_prior(rank)
    # Candidates best first; the other sentences only when more are asked for than there are candidates,
    # not to stand in for candidates skipped as near-repeats ("Scroll down for video.", "REUTER").
    others = sorted(set(range(len(body))) - set(candidates)) if len(candidates) < wanted else []
    ranking = sorted(candidates, key=lambda i: -scores[i]) + others
    chosen: list[int] = []
    for index in ranking:
        if len(chosen) == wanted:
            break
        if any(_cosine(vectors[index], vectors[other]) > _NEAR_REPEAT for other in chosen):
            continue  # a near-repeat says nothing new
        chosen.append(index)
    return Summary(tuple(_summary_sentence(body[i], scores[i]) for i in sorted(chosen)))


def _is_candidate(text: str) -> bool:
    """Whether a sentence can stand in a summary: a whole statement, not a caption, teaser or question."""
    if len(text.split()) < _MIN_WORDS or _CAPTION.search(text):
        return False
    if text.rstrip(" '\"`’”").endswith("?"):
        return False
    label = _LABEL.match(text)
    return not (label and len(label["label"].split()) <= 6 and not _label_is_prose(label["label"]))


def _label_is_prose(label: str) -> bool:
    if _LABEL_VERB.search(label):
        return True
    words = label.replace("’", "'").split()
    if _DATELINE.fullmatch(label) is None or words == ["NEW"]:
        return False
    return not _TEASER_WORDS.intersection(word.strip(".,") for word in words)


def _wanted_count(available: int, sentences: int | None, ratio: float | None) -> int:
    if sentences is not None:
        count = sentences
    elif ratio is not None:
        # Exactly: 0.28 * 25 is 7.000000000000001 in floating point, which ceil would make 8.
        count = math.ceil(Fraction(str(ratio)) * available)
    else:
        count = DEFAULT_SENTENCES
    return max(1, min(count, MAX_SENTENCES, available))


def _summary_sentence(sentence: Sentence, score: float) -> SummarySentence:
    return SummarySentence(text=sentence.text, start=sentence.start, end=sentence.end, score=round(score, 4))


def _term_vector(text: str) -> Counter[str]:
    return Counter(t for t in (m.lower() for m in _TOKEN.findall(text)) if t not in _STOPWORDS)


def _norm(vector: Counter[str]) -> float:
    return math.sqrt(sum(v * v for v in vector.values()))


def _cosine(left: Counter[str], right: Counter[str], right_norm: float | None = None) -> float:
    if not left or not right:
        return 0.0
    dot = sum(count * right[term] for term, count in left.items())
    return dot / (_norm(left) * (_norm(right) if right_norm is None else right_norm))


def _position_prior(index: int) -> float:
    return 1.0 / (1.0 + _POSITION_DECAY * index)
