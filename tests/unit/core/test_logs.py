"""The one-line log formats: key=value pairs that split on spaces, and JSON."""

from __future__ import annotations

import json
import logging

from newsdesk.logs import JsonFormatter, KeyValueFormatter, bound


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("service.app", logging.INFO, __file__, 1, "request", (), None)
    record.__dict__.update(extra)
    return record


def test_key_value_lines_quote_only_values_that_would_break_the_line() -> None:
    with bound(article_id="0b6f3c8e"):
        line = KeyValueFormatter().format(
            _record(
                path="/v1/articles",
                status=202,
                error='"no"',
                detail="a=b",
                text="two\nlines",
                tabbed="a\tb",
                empty="",
            )
        )
    fields = line.split(" ")
    assert fields[1:5] == ["level=info", "logger=service.app", "event=request", "article_id=0b6f3c8e"]
    assert "path=/v1/articles" in fields
    assert "status=202" in fields
    assert 'error="\\"no\\""' in fields
    assert 'detail="a=b"' in fields
    assert 'text="two\\nlines"' in fields
    assert 'tabbed="a\\tb"' in fields
    assert 'empty=""' in fields
    assert 'title="two words"' in KeyValueFormatter().format(_record(title="two words"))


def test_json_lines_carry_the_same_fields() -> None:
    line = json.loads(JsonFormatter().format(_record(path="/v1/articles", status=202)))
    assert line["event"] == "request"
    assert (line["path"], line["status"]) == ("/v1/articles", 202)
