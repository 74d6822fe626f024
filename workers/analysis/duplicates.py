"""Near-duplicate detection: normalised word shingles, compact seed sketches, a candidate index, exact checks.

How it works
------------
1. *Normalisation.* The text goes through `text.prepare` (markup and outlet boilerplate removed, offsets kept
   into the submitted text). Words are case-folded and spelled one way (British -> American, contractions
   written out, honorifics such as "Mr" dropped, "U.S." -> "us", "co-operation" -> "cooperation"); the
   rules are in data/normalisation.json. Each normalised token keeps the offsets of the word it came from.
2. *Shingles.* A shingle is a run of `SHINGLE_WORDS` consecutive tokens inside one sentence; a sentence
   shorter than that (but of at least `MIN_SENTENCE_WORDS` tokens) is one shingle of its own. Shingles never
   cross a sentence or paragraph boundary, so reordered or dropped sentences and paragraphs only lose the
   shingles of what changed. Each shingle is a 64-bit hash (blake2b per token, combined by a polynomial
   and a murmur3 finaliser): deterministic across processes and machines.
3. *Measures* (exact, on the sets A and B of distinct shingle hashes of the two texts):
   - similarity  = |A ∩ B| / |A ∪ B|        (Jaccard resemblance: 1.0 = the same normalised text)
   - containment = |A ∩ B| / min(|A|, |B|)  (share of the smaller text's shingles found in the other)
   Both are symmetric, so "a matches b" and "b matches a" report the same figures.
4. *Verdicts* (`DuplicateThresholds`): `duplicate` when containment >= duplicate_containment and
   similarity >= duplicate_similarity (one text is, but for edits, the other: possibly with paragraphs
   added or dropped); `partial` when containment >= partial_containment and the texts share at least one
   passage of `min_passage_words` tokens (reused paragraphs in a different story); otherwise no match.
5. *Sketch and index.* A seed's sketch is a bottom-k sample of its shingle hashes (the `SKETCH_SIZE`
   smallest, top 32 bits each): about 1 KB. For two texts, the shingles whose hash is below the smaller of
   the two sketches' cut-offs are fully recorded in both sketches, so the shared sketch values over that
   range estimate containment without bias. `SeedIndex` keeps all sketch values in one sorted numpy array
   (an inverted index); a query looks up its own sketch values (binary search), counts hits per seed and
   returns the seeds whose estimated containment is high enough. Those candidates alone are compared
   exactly, on their texts, which also gives the shared passages.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from workers.analysis.text import prepare, word_spans

VERSION = "duplicates-2"  # 2: a hard-wrapped line does not end a sentence
# The layout and meaning of a sketch; a sketch of another format is refused by SeedIndex.add. Bump it (and
# re-sketch the stored seeds) whenever normalisation, shingling or hashing changes.
SKETCH_FORMAT = 2  # 2: line breaks inside a paragraph are not sentence boundaries
SHINGLE_WORDS = 5
# Shared passages are anchored only on shingles a seed repeats at most this often (see _shared_passages).
MAX_SHINGLE_REPEATS = 8
MIN_SENTENCE_WORDS = 3
SKETCH_SIZE = 256

_DATA = Path(__file__).resolve().parent / "data" / "normalisation.json"
_HEADER = struct.Struct("<BBHI")  # format, shingle words, sample count, distinct shingles in the text
_FULL = 0xFFFFFFFF
_MASK64 = (1 << 64) - 1
_POLY = 0x9E3779B97F4A7C15  # odd 64-bit multiplier for combining token hashes
# A line break (any that str.splitlines knows: a form feed between PDF pages too), or closing punctuation.
_LINE_BREAK = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
_BOUNDARY = re.compile(rf"[{_LINE_BREAK}]|[.!?…][\"'”’)\]]*\s")
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'"})
_HYPHENS = frozenset(["-", "\u2010", "\u2011"])
# Entries per word cache: about 120 bytes each, so 25 MB at most (the 13.5k-article corpus fills 60k).
_CACHE_LIMIT = 200_000

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]


# --------------------------------------------------------------------------------------------------------
# Thresholds and results


@dataclass(frozen=True)
class DuplicateThresholds:
    """When a pair is a `duplicate` or `partial` match. Defaults chosen on the TUNING split of
    newsdesk/evaluation/duplicates.py (never on the split that is reported) and checked on the seeds.

    - duplicate_containment (0.55): a duplicate shares at least this share of the smaller text's shingles.
      The seed wire copies 000-002 score 0.635-0.79; the tuning rewrites (spelling, contractions, titles,
      dropped/added paragraphs, reordering, boilerplate, headline, all combined) 0.64-1.0; reused
      paragraphs (seed 003, excerpts) at most 0.38; same-day, same-topic hard negatives at most 0.39.
      The cases in between are templated wire items (weekly money-supply or Eurobond notices that differ
      in names and numbers, 0.45-0.62): at 0.50 they cost 1.2% of precision, at 0.55 0.3%.
    - duplicate_similarity (0.25): and its Jaccard resemblance is at least this: when one text wholly
      contains the other, the longer is at most four times the shorter. Rewrites score 0.42 and up, so a
      short brief quoted inside a long feature is `partial`, not its duplicate.
    - partial_containment (0.1): below this nothing is reported. 94% of the tuning excerpts (two or three
      paragraphs of one story inside another) reach it.
    - min_passage_words (15): shared passages shorter than this are not reported, and a `partial` match
      needs one; this cuts partial matches made of stock phrases ("said it filed with the Securities
      and Exchange Commission") by more than half and loses no tuning excerpt.
    - max_candidates (20): at most this many index candidates are checked exactly per query.
    - candidate_margin (0.5): the index keeps a seed whose *estimated* containment (from sampled sketches)
      is at least this share of partial_containment; with complete sketches the estimate is exact and the
      index applies partial_containment itself.
    """

    duplicate_containment: float = 0.55
    duplicate_similarity: float = 0.25
    partial_containment: float = 0.1
    min_passage_words: int = 15
    max_candidates: int = 20
    candidate_margin: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.partial_containment <= self.duplicate_containment <= 1.0:
            raise ValueError("need 0 < partial_containment <= duplicate_containment <= 1")
        if not 0.0 <= self.duplicate_similarity <= 1.0:
            raise ValueError("duplicate_similarity must be within [0, 1]")
        if self.min_passage_words < 1 or self.max_candidates < 1:
            raise ValueError("min_passage_words and max_candidates must be at least 1")
        if not 0.0 < self.candidate_margin <= 1.0:
            raise ValueError("candidate_margin must be within (0, 1]")

    @property
    def candidate_containment(self) -> float:
        return self.partial_containment * self.candidate_margin


# Settings attributes that thresholds_from reads, by DuplicateThresholds field.
_SETTING_NAMES = {
    "duplicate_containment": "duplicate_threshold",
    "partial_containment": "partial_threshold",
    "duplicate_similarity": "duplicate_min_similarity",
    "min_passage_words": "duplicate_min_passage_words",
    "max_candidates": "duplicate_max_candidates",
}


def thresholds_from(settings: object) -> DuplicateThresholds:
    """Thresholds from a settings object: each attribute of _SETTING_NAMES that is set (not None) wins."""
    values: dict[str, Any] = {}
    for spec in fields(DuplicateThresholds):
        name = _SETTING_NAMES.get(spec.name)
        value = getattr(settings, name, None) if name else None
        if value is not None:
            values[spec.name] = value
    return DuplicateThresholds(**values)


@dataclass(frozen=True, slots=True)
class SharedPassage:
    """A passage found in both texts: `text[start:end]` and `seed_text[seed_start:seed_end]` (code points)."""

    start: int
    end: int
    seed_start: int
    seed_end: int


@dataclass(frozen=True)
class DuplicateMatch:
    """A seed that the text duplicates or partly reuses; the measures are defined in the module docstring."""

    seed_id: str
    similarity: float
    containment: float
    verdict: Literal["duplicate", "partial"]
    shared_passages: tuple[SharedPassage, ...]


@dataclass(frozen=True)
class DuplicateReport:
    """The matches of one text, best first (duplicates, then by similarity and containment)."""

    is_duplicate: bool
    matches: tuple[DuplicateMatch, ...]


# --------------------------------------------------------------------------------------------------------
# Normalisation


@dataclass(frozen=True)
class _Rules:
    honorifics: frozenset[str]
    hyphen_prefixes: frozenset[str]
    abbreviations: frozenset[str]
    negations: Mapping[str, str]
    pronouns: frozenset[str]
    pronoun_suffixes: Mapping[str, str]
    spelling: Mapping[str, str]
    phrases: Mapping[tuple[str, ...], str]
    phrase_starts: frozenset[str]


@cache
def _rules() -> _Rules:
    data = json.loads(_DATA.read_text(encoding="utf-8"))
    spelling: dict[str, str] = {}
    for name, group in data["spelling"].items():
        if name in {"words", "phrases"}:
            continue
        for stem in group["stems"]:
            for british, american in group["suffixes"].items():
                spelling[stem + british] = stem + american
    spelling.update(data["spelling"]["words"])
    contractions = data["contractions"]
    phrases = {tuple(key.split()): value for key, value in data["spelling"]["phrases"].items()}
    return _Rules(
        honorifics=frozenset(data["honorifics"]),
        hyphen_prefixes=frozenset(data["hyphen_prefixes"]),
        abbreviations=frozenset(data["sentence_abbreviations"]),
        negations=contractions["negations"],
        pronouns=frozenset(contractions["pronouns"]),
        pronoun_suffixes=contractions["suffixes"],
        spelling=spelling,
        phrases=phrases,
        phrase_starts=frozenset(key[0] for key in phrases),
    )


def normalise_word(word: str, next_word: str = "") -> list[str]:
    """The normalised tokens of one word: usually one, two for a contraction.

    `next_word` (the word after it) settles "he's been" (has) against "he's here" (is).
    """
    rules = _rules()
    lower = word.casefold().translate(_APOSTROPHES)
    if lower in rules.negations:  # "won't", "cannot"
        return [rules.negations[lower], "not"]
    if "'" not in lower:
        return [rules.spelling.get(lower, lower)]
    if lower.endswith("n't"):
        stem = lower[:-3]
        return [rules.spelling.get(stem, stem), "not"]
    base, _, rest = lower.partition("'")
    suffix = "'" + rest
    if base not in rules.pronouns or suffix not in rules.pronoun_suffixes:
        return [lower]  # a possessive: "Korea's"
    return [base, _auxiliary(base, suffix, next_word)]


def _auxiliary(pronoun: str, suffix: str, next_word: str) -> str:
    """The word a contracted suffix stands for: "let's" -> us; "'s been" -> has; "'d got" -> had."""
    if pronoun == "let":
        return "us"
    if suffix in {"'s", "'d"} and next_word.casefold() in {"been", "got"}:
        return "has" if suffix == "'s" else "had"
    return _rules().pronoun_suffixes[suffix]


@dataclass
class _Tokens:
    """Normalised tokens of a text with their offsets in the submitted text and their sentence numbers."""

    words: list[str]
    starts: list[int]
    ends: list[int]
    sentences: list[int]

    def append(self, word: str, start: int, end: int, sentence: int) -> None:
        self.words.append(word)
        self.starts.append(start)
        self.ends.append(end)
        self.sentences.append(sentence)


_simple_words: dict[str, str] = {}


def _simple(word: str) -> str:
    """The one normalised token of a word that needs no context (most words), or "" if it needs some."""
    token = _simple_words.get(word)
    if token is None:
        rules = _rules()
        lower = word.casefold()
        context = (
            "'" in lower
            or "’" in lower
            or lower in rules.honorifics
            or lower in rules.hyphen_prefixes
            or lower in rules.negations
            or lower in rules.phrase_starts
            or (len(word) == 1 and word.isalpha())
        )
        token = "" if context else rules.spelling.get(lower, lower)
        if len(_simple_words) >= _CACHE_LIMIT:
            _simple_words.clear()
        _simple_words[word] = token
    return token


def _sentence_numbers(clean: str, raw: Sequence[tuple[str, int, int]]) -> list[int]:
    """The sentence number of each word: a new sentence starts after a line break, or after closing
    punctuation followed by a capital or digit, unless the word before is an abbreviation or an initial."""
    if not raw:
        return []
    abbreviations = _rules().abbreviations
    word_starts = [start for _, start, _ in raw]
    boundaries = []
    for match in _BOUNDARY.finditer(clean):
        after = bisect.bisect_left(word_starts, match.end())
        if after == len(raw) or after == 0:
            continue
        if match.group()[-1] not in _LINE_BREAK:  # a line break always ends a sentence
            previous = raw[after - 1][0].casefold()
            following = raw[after][0]
            if not (following[0].isupper() or following[0].isdigit()):
                continue
            if previous in abbreviations or len(previous) == 1:
                continue
        boundaries.append(raw[after][1])
    return [bisect.bisect_right(boundaries, start) for start in word_starts]


def _tokenise(text: str) -> _Tokens:
    rules = _rules()
    doc = prepare(text)
    clean = doc.clean
    raw = word_spans(clean)
    sentences = _sentence_numbers(doc.flowing, raw)  # a line wrapped mid-sentence is not a boundary
    tokens = _Tokens([], [], [], [])
    previous_end = 0
    # The last token may be extended: by the next letter of an acronym ("U.S.") or by the word after a
    # hyphenated prefix ("co-operation").
    acronym = prefix = False
    skip_next = False
    for index, (word, clean_start, clean_end) in enumerate(raw):
        if skip_next:
            skip_next = False
            previous_end = clean_end
            continue
        start, end = doc.to_original(clean_start, clean_end)
        simple = _simple(word)
        if simple and not prefix:  # the common case: one word, one token
            tokens.append(simple, start, end, sentences[index])
            acronym = False
            previous_end = clean_end
            continue
        gap = clean[previous_end:clean_start]
        previous_end = clean_end
        lower = word.casefold()
        if acronym and gap == "." and len(word) == 1 and word.isalpha():
            tokens.words[-1] += lower
            tokens.ends[-1] = end
            continue
        # "co-operation", also when wrapped after the hyphen ("co-\noperation").
        if prefix and (gap in _HYPHENS or (gap[:1] in _HYPHENS and gap[1:].isspace() and "\n" in gap)):
            pieces = normalise_word(word)
            if len(pieces) == 1:
                tokens.words[-1] += pieces[0]
                tokens.ends[-1] = end
                acronym = prefix = False
                continue
        acronym = prefix = False
        next_word, next_start, next_end = raw[index + 1] if index + 1 < len(raw) else ("", 0, 0)
        next_gap = clean[clean_end:next_start] if next_word else ""
        # Any spacing: a copy set with no-break spaces or tabs is the same text.
        if lower in rules.honorifics and next_word[:1].isupper() and not next_gap.replace(".", "").strip():
            continue  # "Mr Kim" and "Kim" are the same words
        phrase = rules.phrases.get((lower, next_word.casefold())) if next_gap.isspace() else None
        if phrase is not None:
            tokens.append(phrase, start, doc.to_original(next_start, next_end)[1], sentences[index])
            skip_next = True
            continue
        for piece in normalise_word(word, next_word):
            tokens.append(piece, start, end, sentences[index])
        acronym = len(word) == 1 and word.isalpha()
        prefix = lower in rules.hyphen_prefixes
    return tokens


def normalised_words(text: str) -> list[str]:
    """The normalised word tokens of a text, in order (what shingles are made of)."""
    return _tokenise(text).words


# --------------------------------------------------------------------------------------------------------
# Hashing and fingerprints

_token_hashes: dict[str, int] = {}


def _token_hash(token: str) -> int:
    value = _token_hashes.get(token)
    if value is None:
        if len(_token_hashes) >= _CACHE_LIMIT:
            _token_hashes.clear()
        value = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
        _token_hashes[token] = value
    return value


def _finalise(values: U64) -> U64:
    """murmur3's fmix64: spreads the bits of the polynomial combination over the whole word."""
    values = values ^ (values >> np.uint64(33))
    values = values * np.uint64(0xFF51AFD7ED558CCD)
    values = values ^ (values >> np.uint64(33))
    values = values * np.uint64(0xC4CEB9FE1A85EC53)
    return values ^ (values >> np.uint64(33))


@dataclass(frozen=True, eq=False)
class Fingerprint:
    """A prepared text: its token offsets and its shingles, in order. Build one with `fingerprint`."""

    token_starts: I64
    token_ends: I64
    hashes: U64  # shingle hashes in text order
    first: I64  # first token of each shingle
    last: I64  # last token of each shingle (inclusive)
    distinct: U64  # sorted distinct shingle hashes

    def sketch(self) -> bytes:
        """The compact index record of this text (see module docstring)."""
        values = np.unique((self.distinct >> np.uint64(32)).astype(np.uint32))[:SKETCH_SIZE]
        header = _HEADER.pack(SKETCH_FORMAT, SHINGLE_WORDS, len(values), min(len(self.distinct), _FULL))
        return header + values.astype("<u4").tobytes()


def fingerprint(text: str) -> Fingerprint:
    """Prepare a text for comparison and sketching."""
    tokens = _tokenise(text)
    count = len(tokens.words)
    token_hashes = np.fromiter((_token_hash(word) for word in tokens.words), dtype=np.uint64, count=count)
    sentence_ids = np.asarray(tokens.sentences, dtype=np.int64)
    # Sentence spans [begin, end) over the token list.
    if count:
        breaks = np.flatnonzero(np.diff(sentence_ids)) + 1
        begins = np.concatenate(([0], breaks))
        ends = np.concatenate((breaks, [count]))
    else:
        begins = ends = np.zeros(0, dtype=np.int64)
    lengths = ends - begins
    parts_hash: list[U64] = []
    parts_first: list[I64] = []
    parts_len: list[I64] = []
    if count >= SHINGLE_WORDS:
        windows = count - SHINGLE_WORDS + 1
        combined = token_hashes[:windows].copy()
        for offset in range(1, SHINGLE_WORDS):
            combined = combined * np.uint64(_POLY) + token_hashes[offset : offset + windows]
        inside = sentence_ids[:windows] == sentence_ids[SHINGLE_WORDS - 1 :]
        parts_hash.append(combined[inside])
        parts_first.append(np.flatnonzero(inside))
        parts_len.append(np.full(int(inside.sum()), SHINGLE_WORDS, dtype=np.int64))
    short = np.flatnonzero((lengths >= MIN_SENTENCE_WORDS) & (lengths < SHINGLE_WORDS))
    if len(short):
        values = []
        for begin, length in zip(begins[short].tolist(), lengths[short].tolist(), strict=True):
            value = 0
            for position in range(begin, begin + length):
                value = (value * _POLY + int(token_hashes[position])) & _MASK64
            values.append(value)
        parts_hash.append(np.asarray(values, dtype=np.uint64))
        parts_first.append(begins[short].astype(np.int64))
        parts_len.append(lengths[short].astype(np.int64))
    if parts_hash:
        raw = np.concatenate(parts_hash)
        first = np.concatenate(parts_first)
        length = np.concatenate(parts_len)
        order = np.argsort(first, kind="stable")
        first, length = first[order], length[order]
        # The length goes into the hash so that a short sentence never equals a window of a longer one.
        hashes = _finalise(raw[order] + length.astype(np.uint64) * np.uint64(_POLY))
    else:
        hashes = np.zeros(0, dtype=np.uint64)
        first = length = np.zeros(0, dtype=np.int64)
    return Fingerprint(
        token_starts=np.asarray(tokens.starts, dtype=np.int64),
        token_ends=np.asarray(tokens.ends, dtype=np.int64),
        hashes=hashes,
        first=first,
        last=first + length - 1,
        distinct=np.unique(hashes),
    )


def sketch(text: str) -> bytes:
    """The compact per-seed index record (about 1 KB): a bottom-k sample of the text's shingle hashes."""
    return fingerprint(text).sketch()


def sketch_many(texts: Iterable[str]) -> list[bytes]:
    """Sketches of many texts (bulk seed loading)."""
    return [sketch(text) for text in texts]


def sketch_is_current(data: bytes) -> bool:
    """Whether a stored sketch has this code's format (else re-sketch the seed's text before indexing it)."""
    try:
        _read_sketch(data)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class _Sketch:
    values: npt.NDArray[np.uint32]  # sorted
    cutoff: int  # every shingle of the text with a hash value <= cutoff is in `values`
    distinct: int  # distinct shingles in the text


def _read_sketch(data: bytes) -> _Sketch:
    if len(data) < _HEADER.size:
        raise ValueError("not a duplicate sketch: too short")
    form, words, count, distinct = _HEADER.unpack_from(data)
    if form != SKETCH_FORMAT or words != SHINGLE_WORDS or len(data) != _HEADER.size + 4 * count:
        raise ValueError(f"not a duplicate sketch of format {SKETCH_FORMAT}: re-sketch the seed")
    values = np.frombuffer(data, dtype="<u4", count=count, offset=_HEADER.size).astype(np.uint32)
    cutoff = int(values[-1]) if count and count < distinct else _FULL
    return _Sketch(values, cutoff, distinct)


# --------------------------------------------------------------------------------------------------------
# Exact comparison


def compare_fingerprints(
    query: Fingerprint, seed_id: str, seed: Fingerprint, thresholds: DuplicateThresholds | None = None
) -> DuplicateMatch | None:
    """Exact comparison of two prepared texts; None when they are not a match."""
    thresholds = thresholds or DuplicateThresholds()
    if not len(query.distinct) or not len(seed.distinct):
        return None
    shared = len(np.intersect1d(query.distinct, seed.distinct, assume_unique=True))
    if not shared:
        return None
    smaller = min(len(query.distinct), len(seed.distinct))
    containment = shared / smaller
    similarity = shared / (len(query.distinct) + len(seed.distinct) - shared)
    if containment < thresholds.partial_containment:
        return None
    passages = _shared_passages(query, seed, thresholds.min_passage_words)
    if containment >= thresholds.duplicate_containment and similarity >= thresholds.duplicate_similarity:
        verdict: Literal["duplicate", "partial"] = "duplicate"
    elif passages:
        verdict = "partial"
    else:
        return None
    return DuplicateMatch(seed_id, round(similarity, 4), round(containment, 4), verdict, passages)


def compare(
    text: str, seed_id: str, seed_text: str, thresholds: DuplicateThresholds | None = None
) -> DuplicateMatch | None:
    """Exact comparison of a text with one seed (also the brute-force baseline); None when no match."""
    return compare_fingerprints(fingerprint(text), seed_id, fingerprint(seed_text), thresholds)


def _shared_passages(query: Fingerprint, seed: Fingerprint, min_words: int) -> tuple[SharedPassage, ...]:
    """Maximal runs of shingles that follow each other the same way in both texts, as character spans.

    Every pair of equal shingles is considered (a sentence repeated in either text has several
    partners), and runs are extended along the diagonal, so the runs found are the same whichever text
    is the query. Consecutive shingles of a run start the same number of tokens apart in both texts and
    leave no token uncovered, so the two spans hold the same normalised words. Overlapping runs are
    reported longest first, each part of either text at most once.
    """
    seed_positions: dict[int, list[int]] = {}
    for j, value in enumerate(seed.hashes.tolist()):
        seed_positions.setdefault(value, []).append(j)
    # A shingle repeated more often than this in either text ("US US US ...", a column of figures)
    # anchors no passage: pairing it with every repeat in the other made the work grow with both counts.
    # Judged in both texts, so that which one is the query changes nothing.
    query_hashes = query.hashes.tolist()
    query_repeats = Counter(query_hashes)
    seed_positions = {
        v: js
        for v, js in seed_positions.items()
        if len(js) <= MAX_SHINGLE_REPEATS and query_repeats[v] <= MAX_SHINGLE_REPEATS
    }
    q_first, q_last = query.first.tolist(), query.last.tolist()
    s_first, s_last = seed.first.tolist(), seed.last.tolist()

    def continues(i: int, j: int) -> bool:
        return bool(
            q_first[i] - q_first[i - 1] == s_first[j] - s_first[j - 1] and q_first[i] <= q_last[i - 1] + 1
        )

    run_end: dict[tuple[int, int], tuple[int, int]] = {}  # run start -> its last (i, j) so far
    previous: dict[tuple[int, int], tuple[int, int]] = {}
    for i, value in enumerate(query_hashes):
        current: dict[tuple[int, int], tuple[int, int]] = {}
        for j in seed_positions.get(value, ()):
            start = previous.get((i - 1, j - 1))
            if start is None or not continues(i, j):
                start = (i, j)
            current[(i, j)] = start
            run_end[start] = (i, j)
        previous = current

    runs = []
    for (i0, j0), (i1, j1) in run_end.items():
        words = q_last[i1] - q_first[i0] + 1
        if words >= min_words:
            runs.append((words, i0, i1, j0, j1))
    taken_query: list[tuple[int, int]] = []
    taken_seed: list[tuple[int, int]] = []
    passages = []
    for _, i0, i1, j0, j1 in sorted(runs, key=lambda run: (-run[0], run[1], run[3])):
        query_span = (q_first[i0], q_last[i1])
        seed_span = (s_first[j0], s_last[j1])
        if any(_overlap(query_span, taken) for taken in taken_query) or any(
            _overlap(seed_span, taken) for taken in taken_seed
        ):
            continue
        taken_query.append(query_span)
        taken_seed.append(seed_span)
        passages.append(
            SharedPassage(
                start=int(query.token_starts[query_span[0]]),
                end=int(query.token_ends[query_span[1]]),
                seed_start=int(seed.token_starts[seed_span[0]]),
                seed_end=int(seed.token_ends[seed_span[1]]),
            )
        )
    return tuple(sorted(passages, key=lambda p: (p.start, p.seed_start)))


def _overlap(left: tuple[int, int], right: tuple[int, int]) -> bool:
    return left[0] <= right[1] and right[0] <= left[1]


# --------------------------------------------------------------------------------------------------------
# Candidate index


class SeedIndex:
    """In-memory inverted index from sketch values to seeds; finds the seeds worth an exact comparison.

    Postings live in one sorted array pair (value, seed slot) plus a small unsorted tail of recent
    additions, merged in when it grows past an eighth of the main part. A removed or replaced seed is only
    marked dead; its postings go at the next merge.
    """

    _MERGE_MIN = 1 << 16

    def __init__(self, *, max_seeds_per_value: int = 1000, min_sampled_hits: int = 3) -> None:
        # A sketch value found in more seeds than this (boilerplate that survived cleaning, stock phrases)
        # says nothing about any one of them and would make queries slower as the corpus grows.
        self.max_seeds_per_value = max_seeds_per_value
        # Where a sketch is a sample (a long text), a pair needs this many shared values before it is
        # worth an exact check: two chance hits among a dozen sampled values would cost a long seed's
        # preparation for nothing. (Measured on the tuning split: no loss of recall, p95 7.5 -> 5.9 ms.)
        self.min_sampled_hits = min_sampled_hits
        self._slot_of: dict[str, int] = {}
        self._ids: list[str | None] = []
        self._cutoffs = np.zeros(0, dtype=np.int64)
        self._distinct = np.zeros(0, dtype=np.int64)
        self._sizes = np.zeros(0, dtype=np.int64)
        self._alive = np.zeros(0, dtype=bool)
        self._keys = np.zeros(0, dtype=np.uint32)
        self._slots = np.zeros(0, dtype=np.int32)
        self._tail: list[tuple[npt.NDArray[np.uint32], npt.NDArray[np.int32]]] = []
        self._tail_size = 0
        self._tail_sorted: tuple[npt.NDArray[np.uint32], npt.NDArray[np.int32]] | None = None
        self._dead_postings = 0

    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, seed_id: object) -> bool:
        return seed_id in self._slot_of

    def add(self, seed_id: str, sketch: bytes) -> None:
        """Add a seed's sketch; re-adding an id replaces its sketch."""
        parsed = _read_sketch(sketch)
        self.discard(seed_id)
        slot = len(self._ids)
        self._ids.append(seed_id)
        self._slot_of[seed_id] = slot
        if slot >= len(self._alive):
            grow = max(1024, len(self._alive))
            self._cutoffs = np.concatenate((self._cutoffs, np.zeros(grow, dtype=np.int64)))
            self._distinct = np.concatenate((self._distinct, np.zeros(grow, dtype=np.int64)))
            self._sizes = np.concatenate((self._sizes, np.zeros(grow, dtype=np.int64)))
            self._alive = np.concatenate((self._alive, np.zeros(grow, dtype=bool)))
        self._cutoffs[slot] = parsed.cutoff
        self._distinct[slot] = parsed.distinct
        self._sizes[slot] = len(parsed.values)
        self._alive[slot] = True
        if len(parsed.values):
            self._tail.append((parsed.values, np.full(len(parsed.values), slot, dtype=np.int32)))
            self._tail_size += len(parsed.values)
            self._tail_sorted = None
        if self._tail_size > max(self._MERGE_MIN, len(self._keys) // 8):
            self._merge()

    def discard(self, seed_id: str) -> None:
        """Remove a seed if it is there."""
        slot = self._slot_of.pop(seed_id, None)
        if slot is None:
            return
        self._alive[slot] = False
        self._ids[slot] = None
        self._dead_postings += int(self._sizes[slot])
        if self._dead_postings > max(self._MERGE_MIN, (len(self._keys) + self._tail_size) // 4):
            self._merge()

    def _merge(self) -> None:
        keys = np.concatenate([self._keys, *(values for values, _ in self._tail)])
        slots = np.concatenate([self._slots, *(owners for _, owners in self._tail)])
        keep = self._alive[slots]
        keys, slots = keys[keep], slots[keep]
        order = np.argsort(keys, kind="stable")
        self._keys, self._slots = keys[order], slots[order]
        self._tail, self._tail_size, self._tail_sorted = [], 0, None
        self._dead_postings = 0

    def _segments(self) -> list[tuple[npt.NDArray[np.uint32], npt.NDArray[np.int32]]]:
        if self._tail and self._tail_sorted is None:
            keys = np.concatenate([values for values, _ in self._tail])
            slots = np.concatenate([owners for _, owners in self._tail])
            order = np.argsort(keys, kind="stable")
            self._tail_sorted = (keys[order], slots[order])
        segments = [(self._keys, self._slots)]
        if self._tail_sorted is not None:
            segments.append(self._tail_sorted)
        return segments

    def candidates(
        self,
        query_sketch: bytes,
        limit: int = 20,
        min_containment: float = 0.05,
        exact_containment: float | None = None,
    ) -> list[str]:
        """Seeds whose estimated containment with the query is at least `min_containment`, best first.

        `exact_containment`, if given, replaces `min_containment` for seeds whose sketch and the query's are
        complete, since their score is then the containment itself rather than an estimate.
        """
        query = _read_sketch(query_sketch)
        values = query.values
        if not len(values) or not self._slot_of:
            return []
        hit_slots: list[npt.NDArray[np.int32]] = []
        common = np.zeros(len(values), dtype=bool)
        for keys, owners in self._segments():
            low = np.searchsorted(keys, values, side="left")
            high = np.searchsorted(keys, values, side="right")
            counts = high - low
            common |= counts > self.max_seeds_per_value
            use = (counts > 0) & (counts <= self.max_seeds_per_value)
            if not use.any():
                continue
            starts, counts = low[use], counts[use]
            total = int(counts.sum())
            # Positions low..high-1 of every used value, without a Python loop.
            offsets = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(total)
            hit_slots.append(owners[offsets])
        if not hit_slots:
            return []
        slots, hits = np.unique(np.concatenate(hit_slots), return_counts=True)
        alive = self._alive[slots]
        slots, hits = slots[alive], hits[alive]
        if not len(slots):
            return []
        # Over the hash range both sketches record in full (values <= the smaller cut-off), count each
        # side's sample: hits / the smaller count estimates containment.
        seed_cutoffs = self._cutoffs[slots]
        usable = values[~common]
        query_in_range = np.where(
            seed_cutoffs < query.cutoff,
            np.searchsorted(usable, seed_cutoffs, side="right"),
            len(usable),
        )
        seed_in_range = np.where(
            query.cutoff < seed_cutoffs,
            np.minimum(self._sizes[slots], np.ceil(self._distinct[slots] * ((query.cutoff + 1) / 2**32))),
            self._sizes[slots],
        )
        smaller = np.maximum(np.minimum(query_in_range, seed_in_range), 1)
        scores = hits / smaller
        # When both sketches hold every shingle of their text (texts of up to SKETCH_SIZE shingles, most
        # news items) the score is the exact containment, and no margin is needed.
        exact = (seed_cutoffs == _FULL) & (query.cutoff == _FULL) & ~common.any()
        floor = np.where(
            exact, exact_containment if exact_containment is not None else min_containment, min_containment
        )
        keep = (scores >= floor) & (hits >= np.minimum(np.where(exact, 2, self.min_sampled_hits), smaller))
        slots, hits, scores = slots[keep], hits[keep], scores[keep]
        best = np.lexsort((-hits, -scores))[:limit]
        return [self._ids[slot] or "" for slot in slots[best].tolist()]

    def memory_bytes(self) -> int:
        """Bytes held by the index's arrays and id tables (an estimate for the Python objects)."""
        arrays = (self._cutoffs, self._distinct, self._sizes, self._alive, self._keys, self._slots)
        total = sum(array.nbytes for array in arrays)
        total += sum(values.nbytes + owners.nbytes for values, owners in self._tail)
        # Per live id: the string, its dict entry and its list slot (CPython: ~49 + len bytes, ~100 bytes).
        total += sum(49 + len(seed_id) + 100 for seed_id in self._slot_of)
        return total


# --------------------------------------------------------------------------------------------------------
# The query


def find_duplicates(
    text: str,
    index: SeedIndex,
    load_texts: Callable[[Sequence[str]], Mapping[str, str]],
    thresholds: DuplicateThresholds | None = None,
) -> DuplicateReport:
    """Find the seeds a text duplicates or partly reuses: index candidates, then exact comparison."""
    thresholds = thresholds or DuplicateThresholds()
    query = fingerprint(text)
    found = index.candidates(
        query.sketch(),
        limit=thresholds.max_candidates,
        min_containment=thresholds.candidate_containment,
        exact_containment=thresholds.partial_containment,
    )
    texts = load_texts(found) if found else {}
    matches = []
    for seed_id in found:
        seed_text = texts.get(seed_id)
        if seed_text is None:  # removed since the index saw it
            continue
        match = compare_fingerprints(query, seed_id, fingerprint(seed_text), thresholds)
        if match is not None:
            matches.append(match)
    matches.sort(key=lambda m: (m.verdict != "duplicate", -m.similarity, -m.containment, m.seed_id))
    return DuplicateReport(any(m.verdict == "duplicate" for m in matches), tuple(matches))
