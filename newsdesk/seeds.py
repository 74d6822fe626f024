"""Reading seed articles from disk and adding them, with their duplicate-index sketches, to the store."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from newsdesk.jsonl import RecordError, read_records, required
from newsdesk.store import Seed, Store
from workers.analysis.duplicates import sketch
from workers.analysis.text import has_article_words

# The one rule for a seed id, wherever it comes from (POST /v1/seeds, a file name, a JSONL line): an id
# is a path segment (/v1/seeds/<id>) and the listing's cursor (?after=<id>), so any other would be
# listed but could be neither fetched nor paged past. \Z, not "$": "$" would let a final newline in.
MAX_SEED_ID_CHARS = 128
SEED_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.\-]{{0,{MAX_SEED_ID_CHARS - 1}}}\Z")
SEED_ID_RULE = f"1-{MAX_SEED_ID_CHARS} letters, digits, '_', '.' or '-', starting with a letter or digit"


class SeedFileError(ValueError):
    """A seed file or line that cannot be read; the message names it."""


def _checked_id(seed_id: str, where: str) -> str:
    if SEED_ID.match(seed_id) is None:
        shown = seed_id if len(seed_id) <= 40 else seed_id[:40] + "..."
        raise SeedFileError(f"{where}: {shown!r} is not a valid seed id (use {SEED_ID_RULE})")
    return seed_id


def _checked_text(text: str, where: str) -> str:
    """As POST /v1/seeds would: a seed without words would be stored and match nothing."""
    if not has_article_words(text):
        raise SeedFileError(f"{where}: the text contains no words")
    return text


def read_seeds(path: Path) -> Iterator[Seed]:
    """Seeds from a folder of .txt files (id: the name without .txt) or a JSONL file of {id, title?, text}."""
    if path.is_dir():
        for file in sorted(path.glob("*.txt")):
            seed_id = _checked_id(file.stem, str(file))
            try:
                text = file.read_text(encoding="utf-8")
            except UnicodeDecodeError as error:
                raise SeedFileError(f"{file}: not UTF-8 text ({error.reason})") from error
            except OSError as error:  # a folder named *.txt, a dangling link, no permission
                raise SeedFileError(f"{file}: cannot be read ({error.strerror or error})") from error
            yield Seed(id=seed_id, text=_checked_text(text, str(file)))
        return
    try:
        for number, record in read_records(path):
            where = f"{path}:{number}"
            yield Seed(
                id=_checked_id(str(required(record, "id", (str, int), where)), where),
                text=_checked_text(required(record, "text", str, where), where),
                title=record.get("title"),
                source=record.get("source"),
            )
    except RecordError as error:
        raise SeedFileError(str(error)) from error


def add_seeds(
    store: Store, seeds: Iterable[Seed], *, stopping: Callable[[], bool] = lambda: False
) -> tuple[int, int]:
    """Sketch and store seeds; returns (added or changed, unchanged). Every seed is read first, so that a
    bad file or line (SeedFileError) stops the load before anything is stored. Sketching is the slow part:
    `stopping` is asked before each seed, and a stop leaves what was stored so far."""
    every = list(seeds)
    return store.add_seeds(itertools.takewhile(lambda _: not stopping(), every), sketch)
