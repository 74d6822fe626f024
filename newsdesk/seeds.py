"""Reading seed articles from disk and adding them, with their duplicate-index sketches, to the store."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

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
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                yield Seed(
                    id=str(record["id"]),
                    text=record["text"],
                    title=record.get("title"),
                    source=record.get("source"),
                )
            except (ValueError, KeyError, TypeError) as error:
                raise SeedFileError(
                    f"{path}:{number}: expected a JSON object with 'id' and 'text'"
                ) from error


def add_seeds(store: Store, seeds: Iterable[Seed]) -> tuple[int, int]:
    """Sketch and store seeds; returns (added or changed, unchanged)."""
    return store.add_seeds(seeds, sketch)
