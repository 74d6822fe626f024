"""Reading JSONL files (seed files, evaluation data) with errors that name the file, the line and the fault.

A malformed line must stop whatever reads the file (seeds half loaded, or figures over part of a file,
would be wrong without saying so), but with one line a person can act on, not a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class RecordError(ValueError):
    """A JSONL file that cannot be read as its format says; the message starts `path:line:`."""


def read_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, JSON object) for each non-blank line of a UTF-8 JSONL file."""
    # Read as bytes and decoded line by line: a text stream decodes ahead in chunks, so its error would
    # name the wrong line.
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                byte = error.object[error.start]
                raise RecordError(f"{path}:{number}: not UTF-8 (invalid byte 0x{byte:02x})") from error
            if number == 1:
                line = line.removeprefix("\ufeff")  # a byte-order mark some editors write
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise RecordError(f"{path}:{number}: not JSON ({error.msg}, column {error.colno})") from error
            if not isinstance(record, dict):
                raise RecordError(f"{path}:{number}: a JSON object was expected, not {type(record).__name__}")
            yield number, record


def required(record: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    """record[name], which must be there and of `kind`; `where` is the `path:line` of the record."""
    if name not in record:
        raise RecordError(f'{where}: missing field "{name}"')
    value = record[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int in Python, but never a valid offset or score here.
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise RecordError(f'{where}: field "{name}" must be {expected}, not {type(value).__name__}')
    return value
