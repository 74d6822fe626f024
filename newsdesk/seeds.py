"""Reading seed articles from disk and adding them, with their duplicate-index sketches, to the store."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from newsdesk.jsonl import RecordError, read_records, required
from newsdesk.store import Seed, Store
from workers.analysis.duplicates import sketch


class SeedFileError(ValueError):
    """A seed file or line that cannot be read; the message names it."""


def read_seeds(path: Path) -> Iterator[Seed]:
    """Seeds from a folder of .txt files (id: the name without .txt) or a JSONL file of {id, title?, text}."""
    if path.is_dir():
        for file in sorted(path.glob("*.txt")):
            try:
                text = file.read_text(encoding="utf-8")
            except UnicodeDecodeError as error:
                raise SeedFileError(f"{file}: not UTF-8 text ({error.reason})") from error
            yield Seed(id=file.stem, text=text)
        return
    try:
        for number, record in read_records(path):
            where = f"{path}:{number}"
            yield Seed(
                id=str(required(record, "id", (str, int), where)),
                text=required(record, "text", str, where),
                title=record.get("title"),
                source=record.get("source"),
            )
    except RecordError as error:
        raise SeedFileError(str(error)) from error


def add_seeds(store: Store, seeds: Iterable[Seed]) -> tuple[int, int]:
    """Sketch and store seeds; returns (added or changed, unchanged)."""
    return store.add_seeds(seeds, sketch)
