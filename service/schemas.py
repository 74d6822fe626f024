"""Request and response schemas: what the API accepts, what it returns, and the OpenAPI document of both."""

from __future__ import annotations

import re
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from newsdesk.settings import Settings
from workers.analysis.summary import MAX_SENTENCES
from workers.analysis.text import has_words

MAX_TEXT_CHARS = Settings.max_text_chars  # the documented default; NEWSDESK_MAX_TEXT_CHARS changes it
SEED_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def _has_words(value: str) -> None:
    if not has_words(value):
        raise ma.ValidationError("Text contains no words.")


def _no_control_characters(value: str) -> None:
    if any(ord(c) < 32 and c not in "\t\n\r" for c in value):
        raise ma.ValidationError("Control characters are not allowed.")


class StrictSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE


def _text_field(description: str) -> fields.String:
    return fields.String(
        required=True,
        # The upper bound is NEWSDESK_MAX_TEXT_CHARS, checked by the view; maxLength shows the default.
        validate=[validate.Length(min=1), _has_words],
        metadata={"description": description, "maxLength": MAX_TEXT_CHARS},
    )


def _short_text(maximum: int, description: str) -> fields.String:
    return fields.String(
        validate=[validate.Length(min=1, max=maximum), _no_control_characters],
        metadata={"description": description},
    )


class OptionsSchema(StrictSchema):
    summary_sentences = fields.Integer(
        validate=validate.Range(min=1, max=MAX_SENTENCES),
        metadata={"description": "Sentences in the summary (default 3)"},
    )
    summary_ratio = fields.Float(
        validate=validate.Range(min=0, max=1, min_inclusive=False),
        allow_nan=False,
        metadata={"description": "Summary length as a share of the article's sentences, instead of a count"},
    )

    @ma.validates_schema
    def _one_length(self, data: dict[str, Any], **_: Any) -> None:
        if "summary_sentences" in data and "summary_ratio" in data:
            raise ma.ValidationError("Give summary_sentences or summary_ratio, not both.", "summary_ratio")


class ArticleSubmissionSchema(StrictSchema):
    text = _text_field("The article, as plain text or HTML (markup and outlet boilerplate are removed)")
    title = _short_text(1_000, "Headline")
    url = fields.Url(
        validate=validate.Length(max=2_048),
        schemes={"http", "https"},
        metadata={"description": "Where the article was published"},
    )
    source = _short_text(200, "Outlet or feed name")
    published_at = fields.AwareDateTime(
        format="iso", default_timezone=None, metadata={"description": "ISO 8601 with a time zone"}
    )
    options = fields.Nested(OptionsSchema, load_default=dict)


class SubmissionAcceptedSchema(ma.Schema):
    id = fields.String(required=True)
    status = fields.String(required=True, metadata={"description": "queued, running, done or failed"})
    links = fields.Dict(keys=fields.String(), values=fields.String())


# Results
class SummarySentenceSchema(ma.Schema):
    text = fields.String(required=True)
    start = fields.Integer(
        required=True, metadata={"description": "Offset in code points into the submitted text"}
    )
    end = fields.Integer(required=True)
    score = fields.Float(required=True)


class MentionSchema(ma.Schema):
    text = fields.String(required=True)
    start = fields.Integer(required=True)
    end = fields.Integer(required=True)
    kind = fields.String(required=True, metadata={"description": "name, metonym, person or adjective"})


class HolderSchema(ma.Schema):
    text = fields.String(required=True, metadata={"description": "The speaker or actor, as written"})
    start = fields.Integer(required=True)
    end = fields.Integer(required=True)
    cue = fields.String(
        required=True, metadata={"description": "The attributing words: said, condemned, ..."}
    )


class EvidenceSchema(ma.Schema):
    text = fields.String(required=True)
    start = fields.Integer(required=True)
    end = fields.Integer(required=True)
    label = fields.String(required=True)
    score = fields.Float(required=True)
    confidence = fields.Float(required=True)
    mentions = fields.List(fields.Nested(MentionSchema), required=True)
    holder = fields.Nested(
        HolderSchema,
        allow_none=True,
        metadata={"description": "Who the sentence attributes the sentiment to; null when it names nobody"},
    )


class TargetStanceSchema(ma.Schema):
    label = fields.String(
        required=True, validate=validate.OneOf(["negative", "neutral", "positive", "not_mentioned"])
    )
    score = fields.Float(required=True, metadata={"description": "P(positive) - P(negative), -1..1"})
    confidence = fields.Float(required=True, metadata={"description": "Probability of the label, 0..1"})
    mentions = fields.Integer(required=True)
    evidence = fields.List(fields.Nested(EvidenceSchema), required=True)


class StanceTargetsSchema(ma.Schema):
    us = fields.Nested(TargetStanceSchema, required=True)
    russia = fields.Nested(TargetStanceSchema, required=True)
    un = fields.Nested(TargetStanceSchema, required=True)


class SharedPassageSchema(ma.Schema):
    start = fields.Integer(required=True)
    end = fields.Integer(required=True)
    seed_start = fields.Integer(required=True)
    seed_end = fields.Integer(required=True)


class DuplicateMatchSchema(ma.Schema):
    seed_id = fields.String(required=True)
    similarity = fields.Float(required=True)
    containment = fields.Float(required=True)
    verdict = fields.String(required=True, validate=validate.OneOf(["duplicate", "partial"]))
    shared_passages = fields.List(fields.Nested(SharedPassageSchema), required=True)


class _AnalysisBlock(ma.Schema):
    status = fields.String(required=True, validate=validate.OneOf(["queued", "running", "done", "failed"]))
    version = fields.String(metadata={"description": "The analysis version that produced the result"})
    error = fields.String()
    finished_at = fields.String()


class SummaryBlockSchema(_AnalysisBlock):
    sentences = fields.List(fields.Nested(SummarySentenceSchema))
    text = fields.String()


class StanceBlockSchema(_AnalysisBlock):
    targets = fields.Nested(StanceTargetsSchema)


class DuplicatesBlockSchema(_AnalysisBlock):
    is_duplicate = fields.Boolean()
    matches = fields.List(fields.Nested(DuplicateMatchSchema))
    seeds_checked = fields.Integer()


class ArticleSchema(ma.Schema):
    id = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(["queued", "running", "done", "failed"]))
    title = fields.String()
    url = fields.String()
    source = fields.String()
    published_at = fields.String()
    options = fields.Dict()
    text_length = fields.Integer(metadata={"description": "Code points in the submitted text"})
    created_at = fields.String(required=True)
    updated_at = fields.String(required=True)
    finished_at = fields.String()
    summary = fields.Nested(SummaryBlockSchema, required=True)
    stance = fields.Nested(StanceBlockSchema, required=True)
    duplicates = fields.Nested(DuplicatesBlockSchema, required=True)
    links = fields.Dict(keys=fields.String(), values=fields.String())


# Seeds
class SeedSubmissionSchema(StrictSchema):
    id = fields.String(
        validate=validate.Regexp(
            SEED_ID, error="Use 1-128 letters, digits, '_', '.' or '-', starting with a letter or digit."
        ),
        metadata={"description": "Stable id; generated when absent. Re-posting an id replaces that seed."},
    )
    text = _text_field("The seed article")
    title = _short_text(1_000, "Headline")
    source = _short_text(200, "Outlet or feed name")


class SeedSummarySchema(ma.Schema):
    id = fields.String(required=True)
    title = fields.String(allow_none=True)
    source = fields.String(allow_none=True)
    added_at = fields.String(allow_none=True)


class SeedSchema(SeedSummarySchema):
    text = fields.String(required=True)


class SeedListQuerySchema(StrictSchema):
    after = fields.String(
        validate=validate.Length(max=128),
        metadata={"description": "Cursor: the last id of the previous page"},
    )
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


class SeedPageSchema(ma.Schema):
    items = fields.List(fields.Nested(SeedSummarySchema), required=True)
    count = fields.Integer(required=True, metadata={"description": "Seeds stored in all"})
    next = fields.String(
        allow_none=True, metadata={"description": "Cursor for the next page, null on the last"}
    )


class HealthSchema(ma.Schema):
    status = fields.String(required=True)
    checks = fields.Dict(keys=fields.String(), values=fields.Raw())
