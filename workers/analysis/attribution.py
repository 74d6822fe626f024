"""Who voices the sentiment in a sentence: the speaker or actor a news sentence attributes it to.

"North Korea's Foreign Ministry condemned the UN Security Council" carries negative sentiment toward the
UN, but it is the ministry's, not the outlet's. Newsrooms reading the stance evidence want that holder
named. Finding it needs no parser for the common news forms, which is what this module covers:

- subject + attribution verb: "Kremlin spokesman Dmitry Peskov said ...", "Moscow accused Washington ...";
- verb + speaker after a quotation: '"...," said Vasily Nebenzia.';
- "according to <speaker>".

Pronoun speakers ("he said") are not resolved: no holder is better than a wrong one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Verbs that attribute a statement or an attitude to their subject.
# Not "states", a noun far more often than a verb ("in 34 U.S. states").
_CUES = (
    "said|says|say|told|tells|added|adds|stated|wrote|writes|tweeted|declared|announced|"
    "warned|warns|urged|urges|accused|accuses|condemned|condemns|criticised|criticized|criticises|"
    "criticizes|denounced|denounces|praised|praises|welcomed|welcomes|hailed|hails|lauded|lauds|"
    "slammed|slams|blasted|blasts|rejected|rejects|dismissed|dismisses|demanded|demands|called|calls|"
    "claimed|claims|insisted|insists|vowed|vows|argued|argues|noted|notes|thanked|thanks|blamed|blames|"
    "threatened|threatens|cautioned|cautions|complained|complains|stressed|stresses|accepted"
)
_CUE = re.compile(rf"\b(?:{_CUES})\b")
# The verbs whose speaker may follow them ('"...," said Vasily Nebenzia'); after "called" or "accused"
# the words are its object ("a measure, called the Farm Act").
_SPEECH_VERBS = frozenset(
    [
        "said",
        "says",
        "told",
        "added",
        "wrote",
        "writes",
        "tweeted",
        "declared",
        "announced",
        "warned",
        "insisted",
        "stressed",
        "noted",
        "argued",
        "claimed",
        "cautioned",
        "complained",
    ]
)
# Speech verbs that never come before their speaker: ', told a House subcommittee' names the listener.
_NOT_INVERTED = frozenset({"told"})
_CLOSING_QUOTES = "\"”’'"
# A name run right after one of these is a place or an object, not the verb's subject: "Diplomats in
# Washington said", "concern about trade with South Korea and Taiwan and said".
_NOT_BEFORE_SUBJECT = frozenset(
    [
        "in",
        "at",
        "from",
        "near",
        "with",
        "about",
        "to",
        "into",
        "across",
        "inside",
        "outside",
        "between",
        "among",
        "against",
        "over",
        "under",
        "than",
        "like",
        "via",
        "who",
    ]
)
# Words that may follow a speaker named after the verb: a phrase of place, time or manner.
_AFTER_SPEAKER = frozenset(
    ["in", "at", "on", "during", "after", "before", "when", "while", "as", "from", "to"]
)
# Words that end a name read forward: what follows them is a place, a time or a clause ("said Lavrov in
# Moscow", "according to a Treasury official who asked not to be named").
_PLACE_OR_TIME = _NOT_BEFORE_SUBJECT | _AFTER_SPEAKER | {
    "that", "which", "whose", "what", "whether", "if", "there", "this",
    "he", "she", "it", "they", "we", "i", "you", "his", "her", "its", "their",
}  # fmt: skip
# Month and day names end a speaker's name run: "said Lavrov on Tuesday".
_DATES = frozenset(
    [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
        # wire copy abbreviates them: "announced Nov. 17"
        "Jan",
        "Feb",
        "Mar",
        "Apr",
        "Jun",
        "Jul",
        "Aug",
        "Sep",
        "Sept",
        "Oct",
        "Nov",
        "Dec",
    ]
)
# Capitalised at the start of a sentence without being a name: "Following claims that ...".
_NOT_NAMES = frozenset(
    [
        "Following",
        "After",
        "Before",
        "Despite",
        "Amid",
        "Among",
        "Under",
        "Over",
        "With",
        "Without",
        "While",
        "When",
        "Whenever",
        "If",
        "As",
        "But",
        "And",
        "Yet",
        "So",
        "Also",
        "However",
        "Meanwhile",
        "In",
        "On",
        "At",
        "For",
        "From",
        "By",
        "To",
        "Of",
        "Since",
        "Until",
        "Although",
        "Though",
        "Because",
        "Asked",
        "Speaking",
        "Earlier",
        "Later",
        "Separately",
        # quantifiers before a role ("Many analysts said"): the role alone names no one
        "Many",
        "Some",
        "Most",
        "Several",
        "Few",
        "Other",
        "Both",
        "Still",
        "Instead",
    ]
)
_ACCORDING_TO = re.compile(r"\b[Aa]ccording to\s+")
_ACCORDING_TO_CUE = "according to"
# What may stand between a subject and its verb: "Moscow on Saturday condemned", "Lavrov has said", a US
# lawmaker's party and state ("Sen. Lindsey Graham, R-S.C., said").
# Each phrase must follow at least one separator, so a run of phrases or spaces splits only one way:
# with optional separators on both sides ("\s*,?\s*"), "has has has ..." backtracked exponentially.
_ADVERBIAL = re.compile(
    r"(?:[\s,]+(?:has|have|had|also|again|earlier|later|previously|repeatedly|once|"
    r"on (?:[A-Z]\w+|\d{1,2} [A-Z]\w+|[A-Z]\w+ \d{1,2})|in a statement|last (?:week|month|year)|"
    r"this (?:week|month|year)|on [Ss]unday|on [Mm]onday|[RDI]-[A-Z][A-Za-z.]{0,15}))*[\s,]*$"
)
# How far before a verb its subject is looked for: nine name words and a few adverbials fit easily, and
# a bound keeps a long sentence full of verbs linear instead of quadratic.
_LOOKBACK = 200
_WORD = re.compile(r"[\w.’'\-]+")
# Lower-case words that belong inside a speaker's name or role: "Kremlin spokesman Dmitry Peskov".
_INNER = frozenset(
    {
        "of",
        "the",
        "for",
        "and",
        "on",
        "de",
        "spokesman",
        "spokeswoman",
        "spokesperson",
        "minister",
        "ministry",
        "official",
        "officials",
        # plurals of the roles: "Western diplomats said", "according to Russian sources"
        "diplomats",
        "analysts",
        "economists",
        "experts",
        "lawyers",
        "sources",
        "ministers",
        "leaders",
        "envoys",
        "representatives",
        "advisers",
        "commanders",
        "executives",
        "spokesmen",
        "envoy",
        "ambassador",
        "president",
        "secretary",
        "leader",
        "chief",
        "foreign",
        "defence",
        "defense",
        "state",
        "general",
        "council",
        "office",
        "government",
        "media",
        "agency",
        "news",
        "newspaper",
        "daily",
        "magazine",
        "broadcaster",
        "television",
        "radio",
        "lawyer",
        "analyst",
        "economist",
        "diplomat",
        "representative",
        "adviser",
        "advisor",
        "commander",
        "senator",
        "governor",
        "mayor",
        "chairman",
        "chairwoman",
        "director",
        "executive",
        "head",
        "deputy",
        "prime",
        "correspondent",
        "expert",
        "professor",
    }
)
# A name's last word that owns its period: "U.S.", "U.N.", an initial ("John F.").
_ABBREVIATION = re.compile(r"(?:\b\w\.\w+|\b[A-Z])\.$")
_LEADING_FILLER = frozenset({"of", "the", "for", "and", "on", "de", "a", "an"})
_ROLES = _INNER - _LEADING_FILLER  # "spokesman", "officials", ...: the lower-case words that name someone
_PRONOUNS = frozenset({"He", "She", "They", "It", "We", "I", "You", "This", "That", "There"})
_MAX_HOLDER_WORDS = 9
# Lower-case words in a row that a name read forward may run through ("US research firm Pew").
_MAX_LOWER_RUN = 2


@dataclass(frozen=True, slots=True)
class Holder:
    """A sentiment holder: its words, their offsets in the sentence, and the verb attributing to it."""

    text: str
    start: int
    end: int
    cue: str


def find_holder(sentence: str) -> Holder | None:
    """The first speaker or actor the sentence attributes its statement to, if it names one."""
    # A verb's holder lies between the verb before it and its own end, so the first verb that has one
    # gives the earliest; the later verbs of a long sentence need not be looked at.
    by_verb = next(
        (h for cue in _CUE.finditer(sentence) if (h := _verb_holder(sentence, cue))),
        None,
    )
    by_according = next(
        (
            h
            for according in _ACCORDING_TO.finditer(sentence)
            if (h := _name_run_forward(sentence, according.end(), _ACCORDING_TO_CUE))
        ),
        None,
    )
    found = [h for h in (by_verb, by_according) if h is not None]
    return min(found, key=lambda h: h.start) if found else None


def _verb_holder(sentence: str, cue: re.Match[str]) -> Holder | None:
    """The subject before the verb or, after a quotation, only the speaker after it: the words just before
    '," said' are the quotation's, not a subject ('"... against Russia," said one diplomat')."""
    before = sentence[max(0, cue.start() - _LOOKBACK) : cue.start()].rstrip()
    if before.endswith(tuple(_CLOSING_QUOTES)):
        return _speaker_after(sentence, cue, before)
    return _subject_before(sentence, cue) or _speaker_after(sentence, cue, before)


def _subject_before(sentence: str, cue: re.Match[str]) -> Holder | None:
    window = max(0, cue.start() - _LOOKBACK)
    between = _ADVERBIAL.search(sentence, window, cue.start())  # `$` is the cue's start
    end = between.start() if between else cue.start()
    words = list(_WORD.finditer(sentence, window, end))
    run: list[re.Match[str]] = []
    for word in reversed(words):
        if run and sentence[word.end() : run[-1].start()].strip():
            break  # punctuation between the words ends the name
        if len(run) == _MAX_HOLDER_WORDS:
            break
        if not _is_name_word(word.group()):
            if word.group() in _NOT_BEFORE_SUBJECT:
                return None
            break
        run.append(word)
    run.reverse()
    return _holder(sentence, run, cue.group())


def _speaker_after(sentence: str, cue: re.Match[str], before: str) -> Holder | None:
    """'"...," said Vasily Nebenzia' — only right after a quotation or a comma, where speakers go."""
    if (
        cue.group() not in _SPEECH_VERBS - _NOT_INVERTED
        or not before
        or before[-1] not in "," + _CLOSING_QUOTES
    ):
        return None
    speaker = _name_run_forward(sentence, cue.end(), cue.group())
    if speaker is None:
        return None
    # The speaker closes the clause ("said Vasily Nebenzia, Russia's envoy.") or a phrase of place or time
    # follows it ("said Lavrov in Moscow"); ', said Russia must pay' has the verb's clause there instead.
    rest = sentence[speaker.end :].lstrip()
    following = rest.split(None, 1)[0] if rest else ""
    if rest[:1] not in ",.;:!?)" + _CLOSING_QUOTES and following not in _AFTER_SPEAKER:
        return None
    return speaker


def _name_run_forward(sentence: str, position: int, cue: str) -> Holder | None:
    run: list[re.Match[str]] = []
    # Lower-case words that belong to the name only if a capitalised word follows them: "US research
    # firm Pew", "a Treasury official"; "Reuters calculations based on ..." stops after "Reuters".
    pending: list[re.Match[str]] = []
    for word in _WORD.finditer(sentence, position):
        previous = pending[-1] if pending else run[-1] if run else None
        gap = sentence[previous.end() if previous else position : word.start()]
        text = word.group()
        if gap.strip():
            break  # the name's phrase ends at punctuation: "a US research think-tank, ..."
        if len(run) + len(pending) == _MAX_HOLDER_WORDS:
            return _holder(sentence, run, cue)
        if text.rstrip(".,") in _DATES and (pending or (run and run[-1].group() == "on")):
            if not pending:
                run.pop()  # "Lavrov on Tuesday": the name ends before the date
            return _holder(sentence, run, cue)
        # A capitalised word, or a role after descriptions ("a senior U.S. trade official"), closes the
        # lower-case words before it into the name.
        if text[:1].isupper() or text[:1].isdigit() or (pending and text.rstrip(".,") in _ROLES):
            run += [*pending, word]
            pending = []
        elif _is_name_word(text) and not pending:
            run.append(word)
        elif text[:1].islower() and len(pending) < _MAX_LOWER_RUN and text not in _PLACE_OR_TIME:
            pending.append(word)
        else:
            return _holder(sentence, run, cue)
    if cue == _ACCORDING_TO_CUE:
        # "According to" takes a noun phrase, so lower-case words that close it are its head: "according
        # to a US research think-tank."; after "said" they would be a clause ("said the U.S. was lying").
        run += pending
    return _holder(sentence, run, cue)


def _is_name_word(word: str) -> bool:
    # A role word may carry the sentence's period: '," said the U.N. chief.'
    return word[:1].isupper() or word[:1].isdigit() or word.rstrip(".") in _INNER or word in {"’s", "'s"}


def _holder(sentence: str, run: list[re.Match[str]], cue: str) -> Holder | None:
    # Leading articles, sentence openers and words that describe rather than name ("one European
    # diplomat", "the latest Baker Hughes Co rig count", "calculations by Reuters") go; roles stay.
    while run and (
        run[0].group() in _LEADING_FILLER
        or run[0].group() in _NOT_NAMES
        or (run[0].group()[:1].islower() and run[0].group() not in _INNER)
    ):
        run = run[1:]
    while run and (run[-1].group().lower() in _LEADING_FILLER or run[-1].group().isdigit()):
        run = run[:-1]  # "the", or a year: "according to CPC's 1986 annual report"
    capitalised = [w.group() for w in run if w.group()[:1].isupper() and w.group() not in {"The", "A", "An"}]
    if (
        not capitalised
        or (len(run) == 1 and run[0].group() in _PRONOUNS)
        # "The report, dated March 27, said"; "May said" is more likely Theresa May than the month.
        or (capitalised != ["May"] and all(w.rstrip(".,") in _DATES for w in capitalised))
    ):
        return None
    start, end = run[0].start(), run[-1].end()
    text = sentence[start:end].rstrip(",")
    if text.endswith(".") and not _ABBREVIATION.search(text):
        text = text[:-1]  # the sentence's period, not the abbreviation's ("the U.S." keeps it)
    return Holder(text=text, start=start, end=start + len(text), cue=cue)
