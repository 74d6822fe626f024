"""What the evaluation reads: JSONL records (newsdesk.jsonl), and the files with nothing to score."""

from __future__ import annotations

from newsdesk.jsonl import RecordError


class NoExamples(RecordError):
    """A file that is well formed but holds nothing to score: the evaluation skips it and says so."""
