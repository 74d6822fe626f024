"""Text preparation shared by every analysis: markup and boilerplate removal, sentences, words.

Everything downstream works on a cleaned copy of the submitted text, while every offset it reports
points into the submitted text itself (Unicode code points). `Document` carries the map between them.
"""

from __future__ import annotations

import html
import itertools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from html.parser import HTMLParser

import blingfire

# Characters that carry nothing for the reader: zero-width space, word joiner, byte-order mark, soft
# hyphen, and C0 controls but for tab and line breaks (a form feed or vertical tab is a line break: PDF
# copy has one between pages). They are dropped as the cleaned text is built, before anything reads it: a
# byte-order mark before "Also Read:" or a soft hyphen inside "orig\u00adinally" hid boilerplate from its
# patterns. The zero-width (non-)joiners stay: they shape Persian words and emoji.
_DROPPED_CHARS = frozenset("\u200b\u2060\ufeff\u00ad") | frozenset(
    chr(code) for code in [*range(0x00, 0x09), *range(0x0E, 0x1C), 0x1F, 0x7F]
)
_DROPPED_PATTERN = re.compile("[" + re.escape("".join(sorted(_DROPPED_CHARS))) + "]")
_VISIBLE_RUN = re.compile("[^" + re.escape("".join(sorted(_DROPPED_CHARS))) + "]+")

# Elements whose content is never article text.
_SKIPPED_ELEMENTS = frozenset(
    [
        "script",
        "style",
        "noscript",
        "template",
        "title",
        "nav",
        "footer",
        "aside",
        "figcaption",
        "form",
        "button",
        "select",
        "iframe",
        "svg",
        "canvas",
        "object",
    ]
)
# Not "head" (its end tag is optional, and what it holds is skipped by the names above anyway) nor "embed"
# (it has no end tag): waiting for their end hid the rest of the document.
# Elements that end a paragraph.
_BLOCK_ELEMENTS = frozenset(
    [
        "p",
        "div",
        "br",
        "hr",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "li",
        "ul",
        "ol",
        "dl",
        "dt",
        "dd",
        "tr",
        "td",
        "th",
        "table",
        "thead",
        "tbody",
        "section",
        "article",
        "header",
        "main",
        "blockquote",
        "pre",
        "figure",
        "address",
        "center",
    ]
)
# Other elements an article's markup uses; a tag-like run of any other name is text (see below).
_INLINE_ELEMENTS = frozenset(
    [
        "html",
        "head",
        "body",
        "meta",
        "link",
        "base",
        "a",
        "abbr",
        "b",
        "bdi",
        "bdo",
        "big",
        "cite",
        "code",
        "data",
        "del",
        "dfn",
        "em",
        "font",
        "i",
        "img",
        "ins",
        "kbd",
        "label",
        "mark",
        "picture",
        "q",
        "s",
        "samp",
        "small",
        "source",
        "span",
        "strike",
        "strong",
        "sub",
        "sup",
        "time",
        "tt",
        "u",
        "var",
        "video",
        "audio",
        "track",
        "wbr",
        "caption",
        "col",
        "colgroup",
        "tfoot",
        "details",
        "summary",
        "fieldset",
        "legend",
        "input",
        "option",
        "textarea",
        "nobr",
        "marquee",
        "area",
        "map",
        "embed",
        "param",
        "menu",
        "dialog",
        "frame",
        "frameset",
    ]
)
_HTML_ELEMENTS = _SKIPPED_ELEMENTS | _BLOCK_ELEMENTS | _INLINE_ELEMENTS
_ELEMENT_NAMES = "|".join(sorted(_HTML_ELEMENTS, key=lambda name: (-len(name), name)))
# Whether a text is HTML. Wire copy puts company names and tickers in angle brackets ("<Guinness Plc>",
# "<P>" for Phillips Petroleum, "<DD.N>"), so a tag-like run is evidence only when it is surely markup: a
# closing tag, a lower-case tag, a tag with attributes, a comment or doctype, or a character reference.
# Each branch is linear: `[^<>]*` stops at the next bracket, and the attribute branch's first run cannot
# hold "=", so it has one place to stop (with `[^<>]*=`, "<A " and 200,000 "=" took 47 s).
_LOOKS_LIKE_HTML = re.compile(
    rf"</(?i:{_ELEMENT_NAMES})\s*>"
    rf"|<(?:{_ELEMENT_NAMES})(?:\s[^<>]*)?/?>"
    rf"|<(?i:{_ELEMENT_NAMES})\s[^<>=]*=[^<>]*>"
    r"|<!--|(?i:<!doctype\s)"
    r"|&(?:#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);"
)
# Markup whose paragraphs come from its block elements: a line break in its text is only a space.
_HAS_BLOCKS = re.compile(r"<\s*(?:" + "|".join(sorted(_BLOCK_ELEMENTS, reverse=True)) + r")\b", re.IGNORECASE)
_BREAKS_TO_SPACES = str.maketrans("\r\n", "  ")

# Outlet boilerplate. A line matching one of these is dropped whole, if it is no longer than
# _MAX_BOILERPLATE_LINE: a longer one is prose (an article sent as one line that ends with a photo credit,
# a paragraph that begins "Related:"), and losing it would lose the article.
_BOILERPLATE_LINE = re.compile(
    r"""^\s*(?:
        (?:also\s+read|read\s+(?:more|also)|related|recommended|watch|listen|more\s+from)(?:\s*[:|]|\s+[\-–])
      | image\s+source\s*:
      | (?:photo|picture|image|file\s+photo)(?:\s+credit)?\s*:
      | source\s*:\s*\S+\s*$
      | \(\s*with\s+inputs?\s+from\b.*\)\s*$
      | this\s+(?:article|story)\s+(?:was\s+)?(?:originally|first)\s+(?:published|appeared)\b
      | read\s+the\s+original\s+article\b
      | (?:click\s+here|subscribe\s+(?:now|to)|sign\s+up\s+(?:for|to)|share\s+(?:this|on)\b)
      | follow\s+us\s+on\s*
        (?:facebook|twitter|x|instagram|telegram|google\s+news|whatsapp|youtube)?\s*[.!]?\s*$
      | advertisement\b.{0,40}$
      | reuters?\s*$
      | story\s+continues\s+below
      | (?:copyright\s*)?©.*$
      | copyright\s+(?:\(c\)\s*)?\d{4}\b.*$
      | all\s+rights\s+reserved
      | this\s+material\s+may\s+not\s+be\s+(?:published|reproduced)
      | (?:we|this\s+(?:web)?site)\s+uses?\s+cookies\b
      | by\s+(?:continuing|using)\b.{0,80}\b(?:cookies|privacy\s+policy|terms\s+of\s+(?:use|service))\b
      | \(\s*reporting\s+by\b.*\)\s*$
      | (?:reporting|writing|editing)\s+by\s+(?-i:[A-Z]).{0,120}$  # a name: "Writing by candlelight" is prose
      | (?-i:[A-Z]{2,}(?:\s+[A-Z]{2,})?)\s*$  # a section kicker ("WORLD"), capitals only
      | (?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?\s+\d{1,2},?\s+\d{4}\s*$
      | \d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2})?\S*)?\s*$
    )""",
    re.IGNORECASE | re.VERBOSE,
)
_MAX_BOILERPLATE_LINE = 200
# A line that is a photo caption: it ends with a credit such as "/ Photo: AP" or "(AP Photo/...)".
_CAPTION_LINE = re.compile(
    r"(?:[/|]\s*(?:photo|image|picture|file)\s*:\s*[^.]{0,60}|\((?:\w+\s+)?photo\s*[:/][^)]{0,80}\)"
    r"|\b(?:photo|image)\s*:\s*(?:AP|AFP|Reuters|Getty|EPA|Xinhua)\b[^.]{0,40})\s*$",
    re.IGNORECASE,
)
# The longest company name a wire code holds ("<Merrill Lynch Capital Markets Inc>"), with room to spare.
_MAX_WIRE_CODE = 60
# A wire service's sign-off after the last sentence of a line ("... 243 mln stg. REUTER"): only it goes.
_SIGN_OFF = re.compile(r"(?<=[.!?\"”’)])\s+(?:REUTER|Reuter)\s*$")
# Prefixes that scrapers and outlets glue onto a real line; only the prefix goes.
_BOILERPLATE_PREFIX = re.compile(r"^\s*(?:date\s+\d{4}-\d{2}-\d{2}\s*|follow\s+us\s+on\s+)+", re.IGNORECASE)
# "Image Source : AGENCY/FILE caption..." after a prefix: the rest of the line is a caption.
_CAPTION_START = re.compile(r"^\s*(?:image|photo|picture)\s+(?:source|credit)\s*:", re.IGNORECASE)

# Abbreviations after which blingfire sometimes ends a sentence wrongly.
_TITLE_ABBREVIATIONS = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "gen",
        "lt",
        "col",
        "maj",
        "capt",
        "sgt",
        "cmdr",
        "adm",
        "sen",
        "rep",
        "gov",
        "pres",
        "st",
        "jr",
        "sr",
        "rev",
        "fr",
        "hon",
        "amb",
        "atty",
        "supt",
        "insp",
        "no",
        "vs",
    ]
)
# A sentence that opens with a title ("... denied any role. Mr. Putin said"): blingfire never breaks before
# one. The word before the period must be a plain lower-case word, so "U.S. Sen. Graham" stays whole.
_BREAK_BEFORE_TITLE = re.compile(
    r"(?<![\w.])(?!(?:vs|etc|approx|cf|incl|no)\.)[a-z]{2,}[.!?][\"'”’)]*\s+(?=(?:"
    + "|".join(sorted(t.capitalize() for t in _TITLE_ABBREVIATIONS - {"jr", "sr", "no", "vs"}))
    + r")\.\s+[A-Z])"
)
# A sentence that opens with a symbol or emoji ("... said. 🔴 Russia launched", "► The", "🇺🇦 Kyiv"):
# blingfire never breaks before one either. After a sentence's end and its space, a symbol (a flag's
# regional indicators are symbols too) starts the next sentence when a word follows it.
_END_AND_SPACE = re.compile(r"[.!?…][\"'”’)\]]*\s+")
_SYMBOL_CATEGORIES = frozenset(["So", "Sk"])
# What an emoji is built of besides symbols: variation selectors and keycaps (marks), the zero-width joiner.
_EMOJI_PART_CATEGORIES = _SYMBOL_CATEGORIES | {"Mn", "Me"}
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_HAS_LETTER = re.compile(r"[^\W\d_]")
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*\s*$")
_WHITESPACE = re.compile(r"\s+")

HEADING_MAX_WORDS = 16
# Hard-wrapped text: at least this many lines inside paragraphs, none longer than a wide terminal, most
# ending within a long word of the longest.
_MIN_WRAPPED_LINES = 3
_MAX_WRAP_WIDTH = 100
_WRAP_SLACK = 15
_MIN_LOWER_SHARE = 0.3  # of the lines inside paragraphs, followed by one that starts in lower case
_LIST_ITEM = re.compile(r"(?:[-*•·–—]|\d{1,3}[.)])\s")


@dataclass(frozen=True, slots=True)
class Sentence:
    """A sentence of the cleaned text; `start`/`end` index the submitted text."""

    start: int
    end: int
    text: str
    paragraph: int
    is_heading: bool = False
    clean_start: int = 0  # the sentence's span in the cleaned text (Document.span_mapper)
    clean_end: int = 0


@dataclass(frozen=True, slots=True)
class Word:
    """A word token; `start`/`end` index the submitted text."""

    text: str
    start: int
    end: int


@dataclass
class _Builder:
    """Accumulates cleaned text and, per cleaned character, its span in the original. Invisible
    characters (_DROPPED_CHARS) are never kept."""

    parts: list[str] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)

    def keep(self, original: str, start: int, end: int, text: str | None = None) -> None:
        """Keep original[start:end], or `text` of the same length in its place."""
        kept = original[start:end] if text is None else text
        if _DROPPED_PATTERN.search(kept) is None:  # the common case: copy the span whole
            self.parts.append(kept)
            self.starts.extend(range(start, end))
            self.ends.extend(range(start + 1, end + 1))
            return
        for run in _VISIBLE_RUN.finditer(kept):
            self.parts.append(run.group())
            self.starts.extend(range(start + run.start(), start + run.end()))
            self.ends.extend(range(start + run.start() + 1, start + run.end() + 1))

    def replace(self, text: str, start: int, end: int) -> None:
        """Put `text` in place of original[start:end] (a character reference's decoded text)."""
        visible = _DROPPED_PATTERN.sub("", text)  # "&shy;" is a soft hyphen
        if visible:
            self.parts.append(visible)
            self.starts.extend([start] * len(visible))
            self.ends.extend([end] * len(visible))


class Document:
    """A submitted text made ready for analysis.

    `clean` is the text with markup, boilerplate and invisible characters removed; `sentences` and
    `words` are taken from it but report offsets into `original`.
    """

    def __init__(
        self, original: str, clean: str, flowing: str, starts: list[int], ends: list[int], *, markup: bool
    ) -> None:
        self.original = original
        self.clean = clean
        # `clean` with each line break inside a paragraph made spaces, at the same length (so the same
        # offsets): hard-wrapped text (e-mail, press releases, PDF copy) breaks its lines mid-sentence.
        self.flowing = flowing
        self.markup = markup  # the submitted text was HTML: `clean` has no markup's whitespace
        self._starts = starts
        self._ends = ends

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """Map a [start, end) span of the cleaned text onto the submitted text."""
        if end <= start:
            position = self._starts[start] if start < len(self._starts) else len(self.original)
            return position, position
        return self._starts[start], self._ends[end - 1]

    def display(self, clean_start: int, clean_end: int) -> str:
        """What a reader sees of a cleaned span: the submitted text itself, less the invisible characters
        dropped from plain text; from HTML, the text with each run of whitespace made one space."""
        cleaned = self.clean[clean_start:clean_end]
        if not self.markup:
            return cleaned
        start, end = self.to_original(clean_start, clean_end)
        raw = self.original[start:end]
        return raw if raw == cleaned else _WHITESPACE.sub(" ", cleaned).strip()

    def span_mapper(self, sentence: Sentence) -> Callable[[int, int], tuple[int, int]]:
        """A function mapping a [start, end) span of `sentence.text` (a mention, a holder) onto the
        submitted text. The map from `sentence.text` back to the cleaned text is built once, here, for all
        of the sentence's spans, so a sentence of n characters with m mentions costs n + m, not n * m (a
        long HTML sentence naming a target thousands of times)."""
        if not self.markup:  # the text is the cleaned span itself

            def in_cleaned_text(start: int, end: int) -> tuple[int, int]:
                if end <= start or end > len(sentence.text):
                    return sentence.start, sentence.end
                return self.to_original(sentence.clean_start + start, sentence.clean_start + end)

            return in_cleaned_text
        if self.original[sentence.start : sentence.end] == sentence.text:
            return lambda start, end: (sentence.start + start, sentence.start + end)
        # The text is the cleaned span with each run of whitespace made one space, then stripped (display):
        # rebuild which cleaned character each of its characters came from.
        cleaned = self.clean[sentence.clean_start : sentence.clean_end]
        sources: list[int] = []
        position = 0
        for run in _WHITESPACE.finditer(cleaned):
            sources.extend(range(position, run.start()))
            sources.append(run.start())
            position = run.end()
        sources.extend(range(position, len(cleaned)))  # a sentence's span has no edge whitespace to strip

        def through_sources(start: int, end: int) -> tuple[int, int]:
            if end <= start or end > len(sources):
                return sentence.start, sentence.end
            return self.to_original(
                sentence.clean_start + sources[start], sentence.clean_start + sources[end - 1] + 1
            )

        return through_sources

    @cached_property
    def sentences(self) -> tuple[Sentence, ...]:
        return tuple(_split_sentences(self))

    @cached_property
    def body_sentences(self) -> tuple[Sentence, ...]:
        return tuple(s for s in self.sentences if not s.is_heading)

    @cached_property
    def words(self) -> tuple[Word, ...]:
        return tuple(
            Word(m.group(), *self.to_original(m.start(), m.end())) for m in _WORD.finditer(self.clean)
        )


def has_words(text: str) -> bool:
    """Whether a text contains at least one word with a letter in it."""
    return _HAS_LETTER.search(text) is not None


def has_article_words(text: str) -> bool:
    """Whether a submitted text has words left to analyse once markup and boilerplate are removed
    ("<script>Russia</script>" or a lone "Advertisement" line has none): what articles and seeds need."""
    return has_words(text) and has_words(prepare(text).clean)


def word_spans(text: str) -> list[tuple[str, int, int]]:
    """Words of a plain string with their offsets."""
    return [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]


def prepare(text: str) -> Document:
    """Clean a submitted article: strip markup and boilerplate, keep a map to the original offsets."""
    builder = _Builder()
    markup = _LOOKS_LIKE_HTML.search(text) is not None
    # Markup with block elements has its paragraphs from them. Without any (a character reference or a
    # few inline tags in wire copy), its line breaks are the writer's, as in plain text.
    blocks = markup and _HAS_BLOCKS.search(text) is not None
    if markup:
        _MarkupStripper(text, builder, breaks_are_spaces=blocks).run()
    else:
        builder.keep(text, 0, len(text))
    lines = "".join(builder.parts).splitlines(keepends=True)
    # Plain text was laid out by its writer: its columns tell hard-wrapped lines. HTML's blocks were not.
    paragraphs = _paragraphs(lines, wrapped=not blocks)
    cleaned, flowing, starts, ends = _drop_boilerplate(paragraphs, builder.starts, builder.ends)
    return Document(text, cleaned, flowing, starts, ends, markup=markup)


def _drop_boilerplate(
    paragraphs: list[tuple[str, str]], starts: list[int], ends: list[int]
) -> tuple[str, str, list[int], list[int]]:
    """Remove boilerplate paragraphs and prefixes. `paragraphs` holds each paragraph as written and as
    flowing text (_paragraphs); both come back cleaned."""
    kept: list[str] = []
    kept_flowing: list[str] = []
    kept_starts: list[int] = []
    kept_ends: list[int] = []
    position = 0
    for paragraph, flowing in paragraphs:
        line_start = position
        position += len(paragraph)
        body = (flowing.splitlines() or [""])[0]  # without its separator, whichever it is (\n, \u2028, \x85)
        cut = 0
        prefix = None if _BOILERPLATE_LINE.match(body) else _BOILERPLATE_PREFIX.match(body)
        if prefix:
            cut = prefix.end()
            if _CAPTION_START.match(body, cut):
                cut = len(body)
        rest = body[cut:]
        if rest.strip() and _is_boilerplate_line(rest):
            cut = len(body)
        sign_off = _SIGN_OFF.search(body, cut)
        end = sign_off.start() if sign_off else len(body)
        for part_start, part_end in ((cut, end), (len(body), len(paragraph))):
            base = line_start + part_start
            kept.append(paragraph[part_start:part_end])
            kept_flowing.append(flowing[part_start:part_end])
            kept_starts.extend(starts[base : base + part_end - part_start])
            kept_ends.extend(ends[base : base + part_end - part_start])
    return "".join(kept), "".join(kept_flowing), kept_starts, kept_ends


def _is_boilerplate_line(text: str) -> bool:
    """A link, credit or caption line that is dropped whole. Only a line short enough to be one is
    matched at all: the caption pattern backtracks on long ones."""
    return len(text) <= _MAX_BOILERPLATE_LINE and bool(
        _BOILERPLATE_LINE.match(text) or _CAPTION_LINE.search(text)
    )


def _without_unclosable_openers(markup: str) -> str:
    """The markup with each construct that can never be closed turned into text, at the same length.

    html.parser looks for the end of every tag, comment or declaration it opens as far as the end of the
    document, so thousands of openers with no ">" after them (or "<!--" with no "-->") took minutes. They
    would have been read as text anyway; the kept text is sliced from the original, so it is unchanged.
    """
    last_close = markup.rfind(">")
    head, tail = markup[: last_close + 1], markup[last_close + 1 :].replace("<", " ")
    last_comment_end = head.rfind("-->") + 1  # 0 when there is none
    if "<!--" in head[last_comment_end:]:
        head = head[:last_comment_end] + head[last_comment_end:].replace("<!--", " !--")
    return head + tail


class _MarkupStripper(HTMLParser):
    """Keeps the text of an HTML document, with paragraph breaks at block elements."""

    def __init__(self, source: str, builder: _Builder, *, breaks_are_spaces: bool) -> None:
        super().__init__(convert_charrefs=False)
        self.source = source
        self.builder = builder
        self.skip_depth = 0
        self.breaks_are_spaces = breaks_are_spaces  # the markup's paragraphs are its block elements
        self.line_offsets = [0]
        for index, char in enumerate(source):
            if char == "\n":
                self.line_offsets.append(index + 1)

    def run(self) -> None:
        self.feed(_without_unclosable_openers(self.source))  # same length: offsets into source hold
        self.close()

    def _offset(self) -> int:
        line, column = self.getpos()
        return self.line_offsets[line - 1] + column

    def _break(self) -> None:
        offset = self._offset()
        if self.builder.parts and not self.builder.parts[-1].endswith("\n"):
            self.builder.replace("\n", offset, offset)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _HTML_ELEMENTS:
            self._keep_wire_code()
        elif tag in _SKIPPED_ELEMENTS:
            self.skip_depth += 1
        elif tag in _BLOCK_ELEMENTS:
            self._break()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _HTML_ELEMENTS:
            self._keep_wire_code()
        elif tag in _BLOCK_ELEMENTS:
            self._break()

    def _keep_wire_code(self) -> None:
        """Keep "<Guinness Plc>" or "<AAPL.O>" as text: no element's name, and written in capitals, it is
        a wire service's company or ticker code, not markup (a lower-case unknown tag stays markup)."""
        raw = self.get_starttag_text() or ""
        name = raw[1:].split(None, 1)[0] if len(raw) > 1 else ""
        if self.skip_depth or not name[:1].isupper() or ":" in name:  # <o:p>: Word's markup
            return
        start = self._offset()
        end = start + len(raw)
        text = self.source[start:end].translate(_BREAKS_TO_SPACES) if self.breaks_are_spaces else None
        self.builder.keep(self.source, start, end, text)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_ELEMENTS:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag in _BLOCK_ELEMENTS:
            self._break()

    def handle_data(self, data: str) -> None:
        if self.skip_depth:
            return
        start = self._offset()
        end = start + len(data)
        # Sliced from the source, not `data` (the parser reads a copy, see run). Hard-wrapped markup
        # ("the United\nStates"): one space per line-break character, so offsets hold.
        text = self.source[start:end].translate(_BREAKS_TO_SPACES) if self.breaks_are_spaces else None
        self.builder.keep(self.source, start, end, text)

    def _reference(self, name: str, decoded: str) -> None:
        if self.skip_depth:
            return
        start = self._offset()
        end = start + len(name) + 1  # "&" and the name ("#" included for a character reference)
        if self.source.startswith(";", end):
            end += 1
        elif decoded.endswith(";"):  # not a reference html knows, and no ";": text ("AT&T")
            self.builder.keep(self.source, start, end)
            return
        self.builder.replace(decoded, start, end)

    def handle_entityref(self, name: str) -> None:
        self._reference(name, html.unescape(f"&{name};"))

    def handle_charref(self, name: str) -> None:
        self._reference(name + "#", html.unescape(f"&#{name};"))


def _split_sentences(doc: Document) -> list[Sentence]:
    sentences: list[Sentence] = []
    paragraph = -1
    position = 0
    for line in doc.flowing.splitlines(keepends=True):  # a line of it is a paragraph
        line_start = position
        position += len(line)
        if not has_words(line):
            continue
        paragraph += 1
        pieces = _merge_false_breaks(
            line, _break_missed_sentences(line, blingfire.text_to_sentences_and_offsets(line)[1])
        )
        single_line_heading = len(pieces) == 1 and _is_heading(line)
        for start, end in pieces:
            chunk = line[start:end]
            stripped_start = start + (len(chunk) - len(chunk.lstrip()))
            stripped_end = end - (len(chunk) - len(chunk.rstrip()))
            if stripped_end <= stripped_start or not has_words(line[stripped_start:stripped_end]):
                continue
            clean_start, clean_end = line_start + stripped_start, line_start + stripped_end
            original_start, original_end = doc.to_original(clean_start, clean_end)
            sentences.append(
                Sentence(
                    start=original_start,
                    end=original_end,
                    text=doc.display(clean_start, clean_end),
                    paragraph=paragraph,
                    is_heading=single_line_heading,
                    clean_start=clean_start,
                    clean_end=clean_end,
                )
            )
    return sentences


def _paragraphs(lines: list[str], *, wrapped: bool) -> list[tuple[str, str]]:
    """The lines grouped into paragraphs, each as written and as flowing text: the same characters, but
    each line break inside the paragraph made spaces. In text laid out by its writer (`wrapped`: plain text,
    or markup without block elements) a line carries on the one before it when it starts in lower case
    after a line that ends no sentence, or, in text that was hard-wrapped, when its first word would not
    have fitted on that line. The lines of HTML with block elements are its blocks, each a paragraph."""
    bodies = [(line.splitlines() or [""])[0] for line in lines]
    width = _wrap_width(bodies) if wrapped else None
    joins = [
        wrapped and _continues(body, following, width)
        for body, following in itertools.zip_longest(bodies, bodies[1:], fillvalue="")
    ]
    # One pass from the end, knowing the last line of the paragraph that follows each line.
    last_line = list(range(len(lines)))
    for index in reversed(range(len(lines) - 1)):
        # A boilerplate or caption line ("Read more: <headline>") that runs into a capitalised line: a
        # link's wrapped tail is a headline, in title case or ending no sentence; prose ends one, and must
        # not be joined to the link and dropped with it.
        body = bodies[index]
        if (
            joins[index]
            and _is_boilerplate_line(body)
            and not bodies[index + 1].lstrip()[:1].islower()
            and _ends_sentence(bodies[last_line[index + 1]].rstrip())
            and not (last_line[index + 1] == index + 1 and _in_title_case(bodies[index + 1]))
        ):
            joins[index] = False
        if joins[index]:
            last_line[index] = last_line[index + 1]
    paragraphs: list[tuple[str, str]] = []
    written: list[str] = []
    flowing: list[str] = []
    for line, body, joined in zip(lines, bodies, joins, strict=True):
        written.append(line)
        if joined:
            flowing.append(body + " " * (len(line) - len(body)))
            continue
        flowing.append(line)
        paragraphs.append(("".join(written), "".join(flowing)))
        written, flowing = [], []
    return paragraphs


def _in_title_case(line: str) -> bool:
    """Whether most of the line's longer words are capitalised, as in a headline ("And Who Will Stop
    It?"); a sentence capitalises few ("Ukraine's foreign minister called it a war crime.")."""
    words = [word for word in _WORD.findall(line) if len(word) > 3]
    return bool(words) and 2 * sum(word[:1].isupper() for word in words) > len(words)


def _wrap_width(bodies: list[str]) -> int | None:
    """The width a text was hard-wrapped at, or None. Wrapped prose has most of its lines inside
    paragraphs, most of them ending within a word's length of the longest (at most a terminal's width),
    and many followed by a line that goes on in lower case; tables, lists and headline blocks of text laid
    out a paragraph per line do not."""
    nonblank = sum(1 for body in bodies if body.strip())
    inside = [(body.rstrip(), following.strip()) for body, following in itertools.pairwise(bodies)]
    inside = [(body, following) for body, following in inside if body.strip() and following]
    if len(inside) < _MIN_WRAPPED_LINES or 2 * len(inside) < nonblank:
        return None
    width = max(len(body) for body, _ in inside)
    filled = sum(1 for body, _ in inside if len(body) >= width - _WRAP_SLACK)
    lower = sum(1 for _, following in inside if following[:1].islower())
    if width > _MAX_WRAP_WIDTH or 2 * filled < len(inside) or _MIN_LOWER_SHARE * len(inside) > lower:
        return None
    return width


def _continues(line: str, following: str, width: int | None) -> bool:
    """Whether the line `following` carries on the paragraph of `line` (see _paragraphs)."""
    text, next_text = line.rstrip(), following.strip()
    if not text or not next_text:
        return False
    if len(following) - len(following.lstrip()) > len(line) - len(line.lstrip()):
        return False  # an indented line opens a paragraph
    ends = _ends_sentence(text)
    if _LIST_ITEM.match(next_text) and (ends or text.endswith(":") or _LIST_ITEM.match(text.lstrip())):
        return False  # a list goes on; "15." or a dash after a line cut mid-sentence is wrapped prose
    if ends:
        return False
    return next_text[:1].islower() or (
        width is not None and len(text) + 1 + len(next_text.split()[0]) > width
    )


def _ends_sentence(text: str) -> bool:
    """Whether a line ends with a sentence's closing punctuation (not a title's period: "... said Mr.")."""
    if not _SENTENCE_END.search(text):
        return False
    last = text.rsplit(None, 1)[-1].rstrip("\"'”’)]").rstrip(".").lower()
    return last not in _TITLE_ABBREVIATIONS and len(last) > 1


def _break_missed_sentences(line: str, offsets: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Split blingfire pieces where a sentence ends and the next opens with a title ("Mr. Putin") or a
    symbol ("🔴 Russia launched")."""
    pieces: list[tuple[int, int]] = []
    for start, end in offsets:
        piece_start = start
        titles = (match.end() for match in _BREAK_BEFORE_TITLE.finditer(line, start, end))
        symbols = (
            match.end()
            for match in _END_AND_SPACE.finditer(line, start, end)
            if _opens_with_symbol(line, match.end(), end)
        )
        for cut in sorted({*titles, *symbols}):
            pieces.append((piece_start, cut))
            piece_start = cut
        pieces.append((piece_start, end))
    return pieces


def _opens_with_symbol(line: str, start: int, end: int) -> bool:
    """Whether line[start:end] opens with a symbol or emoji ("🔴", "►", "★", "🇺🇦") and then a word."""
    if start >= end or unicodedata.category(line[start]) not in _SYMBOL_CATEGORIES:
        return False
    position = start + 1
    while position < end and (
        line[position] == "\u200d" or unicodedata.category(line[position]) in _EMOJI_PART_CATEGORIES
    ):
        position += 1
    while position < end and line[position].isspace():
        position += 1
    return _WORD.match(line, position, end) is not None


def _merge_false_breaks(line: str, offsets: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Join blingfire pieces split after a title ("Mr."), before a lower-case continuation, or inside a
    wire code in angle brackets ("purchased <W.J. Damico Inc>")."""
    merged: list[tuple[int, int]] = []
    for start, end in offsets:
        if merged:
            previous_start, previous_end = merged[-1]
            previous = line[previous_start:previous_end].rstrip()
            last_word = previous.rsplit(None, 1)[-1].rstrip(".").lower() if previous else ""
            following = line[start:end].lstrip()
            if (
                (previous.endswith(".") and last_word in _TITLE_ABBREVIATIONS)
                or following[:1].islower()
                or _splits_a_wire_code(previous, following)
            ):
                merged[-1] = (previous_start, end)
                continue
        merged.append((start, end))
    return merged


def _splits_a_wire_code(previous: str, following: str) -> bool:
    """Whether a break falls inside "<W.J. Damico Inc>": an unclosed "<" right before a capital, closed
    within a few words of the next piece ("was <2 pct. Growth beat it > expected" is no code)."""
    opened = previous.rfind("<")
    if opened <= previous.rfind(">") or not previous[opened + 1 : opened + 2].isupper():
        return False
    closed = following.find(">")
    return closed >= 0 and "<" not in following[:closed] and len(previous) - opened + closed <= _MAX_WIRE_CODE


def _is_heading(line: str) -> bool:
    """A short line without closing punctuation: a headline, section title or kicker."""
    stripped = line.strip()
    return len(stripped.split()) <= HEADING_MAX_WORDS and not _SENTENCE_END.search(stripped)
