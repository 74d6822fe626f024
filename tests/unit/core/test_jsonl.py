"""JSONL records: each fault named by file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsdesk.jsonl import RecordError, read_records, required


def test_a_bad_byte_is_named_by_its_own_line(tmp_path: Path) -> None:
    # Far enough down that a text stream would have decoded it ahead, while still on line 1.
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"a": 1}\n' * 499 + b'{"a": "\xff"}\n' + b'{"a": 1}\n' * 500)
    with pytest.raises(RecordError, match=r"bad\.jsonl:500: not UTF-8 \(invalid byte 0xff\)"):
        list(read_records(path))


def test_records_are_numbered_by_line_past_blanks_and_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"
    path.write_bytes('\ufeff{"a": 1}\n\n{"a": 2}\r\n'.encode())
    assert list(read_records(path)) == [(1, {"a": 1}), (3, {"a": 2})]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("[1, 2]", "a JSON object was expected, not list"),
        ('{"a": ', "not JSON"),
    ],
)
def test_a_line_that_is_no_object_is_named(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(RecordError, match=rf"x\.jsonl:2: {message}"):
        list(read_records(path))


def test_required_fields_are_checked_by_type() -> None:
    assert required({"n": 3}, "n", int, "f:1") == 3
    with pytest.raises(RecordError, match='f:1: missing field "text"'):
        required({}, "text", str, "f:1")
    with pytest.raises(RecordError, match='f:1: field "from" must be int, not bool'):
        required({"from": True}, "from", int, "f:1")
