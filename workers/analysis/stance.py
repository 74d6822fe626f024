"""Stance toward the United States, Russia and the United Nations, with the evidence behind it.

Mentions are found through the alias lists in `data/targets.json`. Each sentence that mentions a
target is judged by a sentence-level scorer (probabilities of negative / neutral / positive toward the
mention); the article-level stance is the weighted mean of those probabilities. A mention that names
its target only in passing (`incidental.py`: "sales in Russia", "a US rapper") is marked so in the
evidence, and where it is the sentence's lead mention of the target, `TargetMentionScorer` pulls the
sentence's judgement toward neutral; it also re-weights the other mentions' judgements to the label mix
of the targets in real news.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from workers.analysis.attribution import Holder, find_holder
from workers.analysis.incidental import IncidentalUse, incidental_use
from workers.analysis.text import Document, Sentence, prepare

# 2: evidence names the sentiment holder; 3: incidental mentions; 4: more of them; 5: hyphenated mentions,
# holder rules (abbreviations, party tags, newspapers); 6: holders read through descriptions ("according to
# US research firm Pew", "Western diplomats said"), "told" names a listener
VERSION = "stance-6"

Label = Literal["negative", "neutral", "positive", "not_mentioned"]
MentionKind = Literal["name", "metonym", "person", "adjective"]
LABELS: tuple[Label, Label, Label] = ("negative", "neutral", "positive")
TARGET_KEYS = ("us", "russia", "un")

# How much a sentence counts toward the article's stance, by the kind of mention it holds. A demonym
# ("Russian oil", "a US rapper") is often about something else, so it counts least.
KIND_WEIGHTS: dict[MentionKind, float] = {"name": 1.0, "metonym": 1.0, "person": 0.7, "adjective": 0.4}
_KIND_RANK: dict[MentionKind, int] = {"name": 0, "metonym": 1, "person": 2, "adjective": 3}
MAX_EVIDENCE = 5
# The sentences judged per target: the first ones of the article. A news article has a few dozen at most;
# a 200,000-character text of nothing but mentions had 15,000, half a minute of the model per article.
MAX_JUDGED_SENTENCES = 200
# How far an incidental mention's judgement moves toward neutral: p' = (1 - s) p + s neutral. On real
# news sentences (see the README's Evaluation) every incidental mention the rules found in the tuning
# half was neutral to both annotators; 0.9 keeps a little of the model's view.
INCIDENTAL_SHRINK = 0.9
# How much a sentence whose mentions of a target are all incidental counts toward the article's stance,
# relative to its kind's weight: "talks in Moscow" says where the news happened, not what the article
# thinks of Russia, so it should not dilute the sentences that do. Above zero so that an article that
# names a target only in passing still gets a (neutral) label.
INCIDENTAL_WEIGHT = 0.1


@dataclass(frozen=True, slots=True)
class Mention:
    target: str
    text: str
    start: int
    end: int
    kind: MentionKind
    incidental: IncidentalUse | None = None  # how the mention names its target only in passing, if so


@dataclass(frozen=True, slots=True)
class TargetedSentence:
    """A sentence and the span of one target mention inside it (offsets into `text`)."""

    text: str
    start: int
    end: int
    # The target mention at that span, when the caller has found it (the stance analysis has; a
    # NewsMTSC example has not, and its span may be no target at all).
    mention: Mention | None = field(default=None, compare=False)


class SentenceScorer(Protocol):
    """Judges the sentiment a sentence expresses toward the marked mention."""

    version: str

    def predict(self, items: Sequence[TargetedSentence]) -> npt.NDArray[np.float64]:
        """Rows of P(negative), P(neutral), P(positive), one per item."""
        ...


@dataclass(frozen=True, slots=True)
class Evidence:
    text: str
    start: int
    end: int
    label: Label
    score: float
    confidence: float
    mentions: tuple[Mention, ...]
    holder: Holder | None = None  # who the sentence attributes the sentiment to, when it names them


@dataclass(frozen=True, slots=True)
class TargetStance:
    label: Label
    score: float
    confidence: float
    mentions: int
    evidence: tuple[Evidence, ...]


@dataclass(frozen=True, slots=True)
class StanceReport:
    targets: dict[str, TargetStance]


@dataclass(frozen=True)
class _Target:
    key: str
    name: str
    pattern: re.Pattern[str]
    kinds: dict[str, MentionKind]
    exclude: re.Pattern[str] | None


@cache
def targets() -> tuple[_Target, ...]:
    """The stance targets, compiled from the alias data file."""
    raw = json.loads(resources.files("workers.analysis").joinpath("data/targets.json").read_text("utf-8"))
    compiled = []
    for key, spec in raw["targets"].items():
        kinds: dict[str, MentionKind] = {
            alias: kind for kind, aliases in spec["aliases"].items() for alias in aliases
        }
        exclude = _alternation(spec.get("exclude", []))
        compiled.append(
            _Target(
                key=key, name=spec["name"], pattern=_alternation(list(kinds)), kinds=kinds, exclude=exclude
            )
        )
    return tuple(compiled)


def _alternation(phrases: list[str]) -> re.Pattern[str]:
    # Longest first so "UN Security Council" wins over "UN"; whole words only, but a trailing period
    # belongs to the alias ("U.S.") and a hyphen joins words without hiding them ("the Russia-Ukraine
    # war", "anti-American", "U.S.-Russian talks"). A dotted code is not a mention: "<UN.AS>" is
    # Unilever's ticker. Each apostrophe is matched straight or curly ("America’s Cup").
    # Any run of spaces, or a line break of hard-wrapped text, separates an alias's words.
    variants = {p.replace("'", apostrophe) for p in phrases for apostrophe in "'’"}
    body = "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in sorted(variants, key=len, reverse=True))
    return re.compile(rf"(?<![\w.])(?:{body})(?!\w|\.\w)")


# A word joined before "American" that makes a compound of its own: an identity ("Korean-American"), a
# name ("Inter-American", "Pan-American"), "all-American", "un-American"; not a stance word ("anti-", "pro-")
# nor "non-" or "ex-" (incidental.py reads those as origins).
_IDENTITY_PREFIX = re.compile(r"(?<![\w.-])(?!(?:anti|pro|non|ex)-)[A-Za-z]+-\Z", re.IGNORECASE)


def _alias_key(matched: str) -> str:
    """The alias as listed, from its spelling in the text (curly apostrophe, line break)."""
    return " ".join(matched.replace("’", "'").split())


def _starts_or_ends_inside(start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    """Whether start or end of [start, end) falls inside one of `spans` (non-overlapping, in order, as
    finditer gives them). Found by bisection, not a scan of every span: a long sentence can hold
    thousands of each ("FOR US" over and over in unpunctuated text)."""
    index = bisect.bisect_right(spans, start, key=lambda span: span[1])  # the first that ends after start
    while index < len(spans) and spans[index][0] < end:
        span_start, span_end = spans[index]
        if span_start <= start or end <= span_end:
            return True
        index += 1  # a span strictly inside [start, end) covers neither end
    return False


def find_mentions(sentence_text: str, offset: int = 0) -> list[Mention]:
    """All target mentions in a sentence, offsets shifted by `offset`."""
    shouting = _mostly_uppercase(sentence_text)
    mentions = []
    for target in targets():
        excluded = [m.span() for m in target.exclude.finditer(sentence_text)] if target.exclude else []
        for match in target.pattern.finditer(sentence_text):
            start, end = match.span()
            if _starts_or_ends_inside(start, end, excluded):
                continue
            if shouting and match.group() in {"US", "UN"}:
                continue  # "TELL US" in an all-caps headline is a pronoun
            if match.group() in {"American", "Americans"} and _IDENTITY_PREFIX.search(
                sentence_text, max(0, start - 40), start
            ):
                continue  # "African-American voters", "the Inter-American Development Bank", "un-American"
            kind = target.kinds[_alias_key(match.group())]
            incidental = incidental_use(sentence_text, start, end, kind)
            mentions.append(
                Mention(target.key, match.group(), start + offset, end + offset, kind, incidental)
            )
    return mentions


def analyse_stance(text: str | Document, scorer: SentenceScorer) -> StanceReport:
    """The stance toward each target, from the sentences that mention it."""
    doc = text if isinstance(text, Document) else prepare(text)
    per_target: dict[str, list[tuple[Sentence, list[Mention]]]] = {key: [] for key in TARGET_KEYS}
    for sentence in doc.sentences:
        found = find_mentions(sentence.text)
        for key in TARGET_KEYS:
            own = [m for m in found if m.target == key]
            if own:
                per_target[key].append((sentence, own))

    judged = {key: pairs[:MAX_JUDGED_SENTENCES] for key, pairs in per_target.items()}
    items: list[TargetedSentence] = []
    for pairs in judged.values():
        for sentence, mentions in pairs:
            lead = lead_mention(mentions)
            items.append(TargetedSentence(sentence.text, lead.start, lead.end, lead))
    probabilities = scorer.predict(items) if items else np.zeros((0, 3))

    report: dict[str, TargetStance] = {}
    row = 0
    for key in TARGET_KEYS:
        pairs = judged[key]
        mention_count = sum(len(mentions) for _, mentions in per_target[key])
        report[key] = _aggregate(doc, pairs, probabilities[row : row + len(pairs)], mention_count)
        row += len(pairs)
    return StanceReport(report)


def lead_mention(mentions: list[Mention]) -> Mention:
    """The mention the sentence is judged by: the state's own name before its institutions,
    people and demonyms; but a leader before a name that is only a place ("talks in Moscow with
    Vladimir Putin"). Other mentions are not preferred for being non-incidental: on the real-news sample
    (README, Evaluation) that made more errors, since the rules miss some incidental uses."""
    lead = min(mentions, key=lambda m: (_KIND_RANK[m.kind], m.start))
    if lead.incidental is not None:
        lead = next((m for m in mentions if m.kind == "person"), lead)
    return lead


def _aggregate(
    doc: Document,
    pairs: list[tuple[Sentence, list[Mention]]],
    probabilities: npt.NDArray[np.float64],
    mention_count: int,
) -> TargetStance:
    if not pairs:
        return TargetStance(label="not_mentioned", score=0.0, confidence=1.0, mentions=0, evidence=())
    weights = np.array([max(_weight(m) for m in mentions) for _, mentions in pairs])
    mean = (weights[:, None] * probabilities).sum(axis=0) / weights.sum()
    label_index = int(mean.argmax())
    drivers = sorted(range(len(pairs)), key=lambda i: -weights[i] * probabilities[i, label_index])
    evidence = tuple(
        _evidence(doc, pairs[i][0], pairs[i][1], probabilities[i]) for i in sorted(drivers[:MAX_EVIDENCE])
    )
    return TargetStance(
        label=LABELS[label_index],
        score=round(float(mean[2] - mean[0]), 4),
        confidence=round(float(mean[label_index]), 4),
        mentions=mention_count,
        evidence=evidence,
    )


def _weight(mention: Mention) -> float:
    return KIND_WEIGHTS[mention.kind] * (INCIDENTAL_WEIGHT if mention.incidental is not None else 1.0)


def _evidence(
    doc: Document, sentence: Sentence, mentions: list[Mention], probs: npt.NDArray[np.float64]
) -> Evidence:
    index = int(probs.argmax())
    holder = find_holder(sentence.text)
    to_original = doc.span_mapper(sentence)  # once per sentence: it may hold thousands of mentions
    return Evidence(
        text=sentence.text,
        start=sentence.start,
        end=sentence.end,
        label=LABELS[index],
        score=round(float(probs[2] - probs[0]), 4),
        confidence=round(float(probs[index]), 4),
        mentions=tuple(
            Mention(m.target, m.text, *to_original(m.start, m.end), m.kind, m.incidental) for m in mentions
        ),
        holder=Holder(holder.text, *to_original(holder.start, holder.end), holder.cue) if holder else None,
    )


def _mostly_uppercase(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return len(letters) >= 6 and sum(c.isupper() for c in letters) > 0.7 * len(letters)


@dataclass(frozen=True, slots=True)
class LabelPrior:
    """The label mix a scorer learnt (`train`) and the one of the targets' mentions in real news
    (`news`), each P(negative), P(neutral), P(positive)."""

    train: tuple[float, float, float]
    news: tuple[float, float, float]

    def ratio(self) -> npt.NDArray[np.float64]:
        return np.asarray(self.news, dtype=np.float64) / np.asarray(self.train, dtype=np.float64)


class TargetMentionScorer:
    """The sentence scorer as the product applies it to mentions of its own targets.

    - A mention that names its target only in passing (`incidental.py`) leans to neutral:
      p' = (1 - shrink) p + shrink neutral.
    - Any other mention of a state or body (not its people: the scorer learnt people) is re-weighted
      from the label mix the scorer learnt to that of such mentions in real news (`prior`, when the
      scorer has one): p' ∝ p · news / train (Saerens et al. 2002). NewsMTSC's people are mostly
      judged for or against; states in the news mostly are not.

    Spans that are not one of the targets' aliases (NewsMTSC's people) pass through unchanged. The
    workers and `newsdesk eval` load the same one (`workers.pipeline.load_scorer`).
    """

    def __init__(
        self, scorer: SentenceScorer, prior: LabelPrior | None = None, shrink: float = INCIDENTAL_SHRINK
    ) -> None:
        self.scorer = scorer
        self.prior = prior
        self.shrink = shrink
        self.version = f"{scorer.version}+targets-1"

    def predict(self, items: Sequence[TargetedSentence]) -> npt.NDArray[np.float64]:
        probabilities = self.scorer.predict(items)
        neutral = np.array([0.0, 1.0, 0.0])
        ratio = self.prior.ratio() if self.prior else None
        for row, item in enumerate(items):
            mention = item.mention if item.mention is not None else _mention_at(item)
            if mention is None:
                continue
            if mention.incidental is not None:
                probabilities[row] = (1.0 - self.shrink) * probabilities[row] + self.shrink * neutral
            elif ratio is not None and mention.kind != "person":
                shifted = probabilities[row] * ratio
                probabilities[row] = shifted / shifted.sum()
        return probabilities


def _mention_at(item: TargetedSentence) -> Mention | None:
    """The target mention whose span the item marks, if it marks one."""
    return next((m for m in find_mentions(item.text) if (m.start, m.end) == (item.start, item.end)), None)


class LexiconScorer:
    """VADER's lexicon and rules over the words around the mention: fast, no model files, uncalibrated.

    Used where the trained model is not wanted (unit tests, minimal installs).
    """

    version = "vader-3.3.2"
    _WINDOW = 12  # words either side of the mention

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer  # noqa: PLC0415

        self._analyzer = SentimentIntensityAnalyzer()

    def predict(self, items: Sequence[TargetedSentence]) -> npt.NDArray[np.float64]:
        rows = np.zeros((len(items), 3))
        for i, item in enumerate(items):
            before = item.text[: item.start].split()[-self._WINDOW :]
            after = item.text[item.end :].split()[: self._WINDOW]
            window = " ".join([*before, item.text[item.start : item.end], *after])
            compound = self._analyzer.polarity_scores(window)["compound"]
            strength = min(1.0, abs(compound)) * 0.9
            side = 2 if compound > 0 else 0
            rows[i, side] = strength if abs(compound) >= 0.05 else 0.0
            rows[i, 1] = 1.0 - rows[i, side]
        return rows
