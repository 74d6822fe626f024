"""Request and response schemas: what the API accepts, what it returns, and the OpenAPI document of both.

The checks that depend on the configuration (NEWSDESK_MAX_TEXT_CHARS, the webhook settings) read the
running app's settings, so that a body's every fault is reported at once: these schemas load inside a
request.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from newsdesk.seeds import MAX_SEED_ID_CHARS, SEED_ID, SEED_ID_RULE
from newsdesk.settings import MAX_BATCH_PAGE, Settings
from newsdesk.webhooks import check_callback_url
from service.app_context import services
from workers.analysis.summary import MAX_SENTENCES
from workers.analysis.text import has_article_words

MAX_TEXT_CHARS = Settings.max_text_chars  # the documented default; NEWSDESK_MAX_TEXT_CHARS changes it


def _has_words(value: str) -> None:
    # Judged on what the analyses will read, or it would be accepted and analysed as nothing.
    if not has_article_words(value):
        raise ma.ValidationError("Text contains no words.")


def _within_configured_length(value: str) -> None:
    limit = services().settings.max_text_chars
    if len(value) > limit:
        raise ma.ValidationError(f"Longer than maximum length {limit}.")


def _is_control(character: str) -> bool:
    code = ord(character)
    return code < 32 or 0x7F <= code <= 0x9F  # C0, DEL and C1


def _no_control_characters(value: str) -> None:
    # Also on URLs: fields.Url passes NUL and DEL, which the HTTP client would refuse only at delivery
    # (it refuses tabs and line breaks itself).
    if any(_is_control(c) and c not in "\t\n\r" for c in value):
        raise ma.ValidationError("Control characters are not allowed.")


class _JsonFloat(fields.Float):
    """A JSON number only: no "0.5" string, which marshmallow would convert (it refuses booleans)."""

    def _validated(self, value: Any) -> float:
        if not isinstance(value, int | float):
            raise self.make_error("invalid")
        return super()._validated(value)


class _UtcDateTime(fields.AwareDateTime):
    """An ISO 8601 time with its zone, taken as the instant it names, in UTC.

    A time without a zone is refused (default_timezone=None), as it always was: whose ten o'clock
    "2024-01-21T10:00:00" is cannot be known, and a guess would be stored as fact.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="iso", default_timezone=None, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dt.datetime:
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            return moment.astimezone(dt.UTC)
        except OverflowError as error:  # "0001-01-01T00:00:00+01:00" is in the year 0 in UTC
            raise ma.ValidationError("Outside the years 1 to 9999 in UTC.") from error


class StrictSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE


def _text_field(description: str) -> fields.String:
    return fields.String(
        required=True,
        # The upper bound is NEWSDESK_MAX_TEXT_CHARS; maxLength shows the default.
        validate=[validate.Length(min=1), _within_configured_length, _has_words],
        metadata={"description": description, "maxLength": MAX_TEXT_CHARS},
    )


def _short_text(maximum: int, description: str) -> fields.String:
    return fields.String(
        validate=[validate.Length(min=1, max=maximum), _no_control_characters],
        metadata={"description": description},
    )


class OptionsSchema(StrictSchema):
    summary_sentences = fields.Integer(
        strict=True,  # 3.5 or "3" is a wrong type, not 3
        validate=validate.Range(min=1, max=MAX_SENTENCES),
        metadata={"description": "Sentences in the summary (default 3)"},
    )
    summary_ratio = _JsonFloat(
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
        validate=[validate.Length(max=2_048), _no_control_characters],
        schemes={"http", "https"},
        metadata={"description": "Where the article was published"},
    )
    source = _short_text(200, "Outlet or feed name")
    published_at = _UtcDateTime(
        metadata={
            "description": "ISO 8601 with a time zone (Z or an offset); returned in UTC to the millisecond "
            "(2024-01-21T10:00:00+02:00 is returned as 2024-01-21T08:00:00.000Z)"
        }
    )
    options = fields.Nested(OptionsSchema, load_default=dict)
    callback_url = fields.Url(
        validate=[validate.Length(max=2_048), _no_control_characters],
        schemes={"http", "https"},
        require_tld=False,
        metadata={
            "description": "Called (POST, signed) with the results once the article is done or failed; "
            "needs NEWSDESK_WEBHOOK_SECRET. Private and loopback addresses are refused unless allowed."
        },
    )

    # After the field's own checks (a schema validator sees only the fields that passed them, so a URL
    # that is not one gets one message), but with the other fields' errors, not after them.
    @ma.validates_schema(skip_on_field_errors=False)
    def _callable_callback(self, data: dict[str, Any], **_: Any) -> None:
        """A callback_url this service will call: webhooks configured, and an address it may reach."""
        url = data.get("callback_url")
        if url is None:
            return
        settings = services().settings
        if not settings.webhook_secret:
            raise ma.ValidationError(
                "Webhooks are not configured on this service (NEWSDESK_WEBHOOK_SECRET).", "callback_url"
            )
        reason = check_callback_url(url, allow_private=settings.webhook_allow_private)
        if reason:
            raise ma.ValidationError(reason, "callback_url")


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
    incidental = fields.String(
        allow_none=True,
        metadata={
            "description": "How the mention names its target only in passing: place (sales in Russia), "
            "market (US oil output), origin (a US rapper) or name (American Cyanamid Co); null when it may "
            "be the target acting. An incidental lead mention pulls its sentence's judgement toward neutral."
        },
    )


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


class CallbackSchema(ma.Schema):
    url = fields.String(required=True)
    status = fields.String(
        required=True,
        metadata={
            "description": "waiting, due, queued, delivered, failed (retries used up) or refused (SSRF)"
        },
    )


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
    expires_at = fields.String(
        metadata={"description": "When the article and its results are deleted (set once it finished)"}
    )
    batch = fields.String(metadata={"description": "The batch it was submitted in"})
    callback = fields.Nested(CallbackSchema)
    summary = fields.Nested(SummaryBlockSchema, required=True)
    stance = fields.Nested(StanceBlockSchema, required=True)
    duplicates = fields.Nested(DuplicatesBlockSchema, required=True)
    links = fields.Dict(keys=fields.String(), values=fields.String())


MAX_WAIT_SECONDS = Settings.max_wait  # the documented default; NEWSDESK_MAX_WAIT changes it


def _within_configured_wait(value: int) -> None:
    limit = services().settings.max_wait
    if value > limit:
        raise ma.ValidationError(f"Must be at most {limit} seconds.")


class WaitQuerySchema(StrictSchema):
    wait = fields.Integer(
        load_default=0,
        validate=[validate.Range(min=0), _within_configured_wait],
        metadata={
            "description": "Seconds to wait for the article (or batch) to finish before answering "
            f"(long-poll); at most NEWSDESK_MAX_WAIT ({MAX_WAIT_SECONDS} by default)",
            "maximum": MAX_WAIT_SECONDS,
        },
    )


_LABELS = ["negative", "neutral", "positive", "not_mentioned"]


def _stance_filter(target: str) -> fields.String:
    return fields.String(
        data_key=f"stance.{target}",
        validate=validate.OneOf(_LABELS),
        metadata={"description": f"Only articles whose stance toward {target} has this label"},
    )


class ArticleListQuerySchema(StrictSchema):
    status = fields.String(validate=validate.OneOf(["queued", "running", "done", "failed"]))
    duplicate = fields.Boolean(
        metadata={"description": "true: only duplicates of a seed; false: only articles checked and not"}
    )
    stance_us = _stance_filter("us")
    stance_russia = _stance_filter("russia")
    stance_un = _stance_filter("un")
    since = fields.AwareDateTime(
        format="iso", default_timezone=None, metadata={"description": "Submitted at or after (ISO 8601)"}
    )
    until = fields.AwareDateTime(
        format="iso", default_timezone=None, metadata={"description": "Submitted before (ISO 8601)"}
    )
    cursor = fields.String(
        validate=validate.Length(max=200), metadata={"description": "`next` of the previous page"}
    )
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


class ArticleListItemSchema(ma.Schema):
    id = fields.String(required=True)
    status = fields.String(required=True)
    created_at = fields.String(required=True)
    finished_at = fields.String(allow_none=True)
    expires_at = fields.String(allow_none=True)
    title = fields.String(allow_none=True)
    source = fields.String(allow_none=True)
    batch = fields.String(allow_none=True)
    is_duplicate = fields.Boolean(allow_none=True, metadata={"description": "null until checked"})
    stance = fields.Dict(
        keys=fields.String(), values=fields.String(), metadata={"description": "target -> label"}
    )
    links = fields.Dict(keys=fields.String(), values=fields.String())


class ArticlePageSchema(ma.Schema):
    items = fields.List(fields.Nested(ArticleListItemSchema), required=True)
    next = fields.String(
        allow_none=True,
        metadata={"description": "Cursor for the next page; null when no older article is left"},
    )


# Batches
class BatchSubmissionSchema(StrictSchema):
    articles = fields.List(
        fields.Raw(allow_none=True),  # each item is checked on its own by the view: a bad one fails alone
        required=True,
        validate=validate.Length(min=1),
        metadata={
            "description": "Articles, each as the body of POST /v1/articles; at most NEWSDESK_MAX_BATCH "
            f"({Settings.max_batch} by default). Each is checked on its own: a bad one is rejected with "
            "its index and reason, the others go in."
        },
    )


class BatchItemSchema(ma.Schema):
    index = fields.Integer(required=True)
    id = fields.String(metadata={"description": "The article, for an accepted item"})
    status = fields.String(
        required=True,
        metadata={"description": "queued, running, done, failed; rejected; gone (deleted or expired)"},
    )
    problem = fields.Dict(metadata={"description": "Why a rejected item was refused (problem details)"})
    links = fields.Dict(keys=fields.String(), values=fields.String())


class BatchCountsSchema(ma.Schema):
    queued = fields.Integer(required=True)
    running = fields.Integer(required=True)
    done = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    gone = fields.Integer(required=True)


class BatchSchema(ma.Schema):
    id = fields.String(required=True)
    status = fields.String(
        required=True, metadata={"description": "running until every accepted article is finished"}
    )
    created_at = fields.String()
    total = fields.Integer(required=True)
    accepted = fields.Integer(required=True)
    rejected = fields.Integer(required=True)
    counts = fields.Nested(BatchCountsSchema)
    items = fields.List(fields.Nested(BatchItemSchema), required=True)
    next = fields.String(allow_none=True, metadata={"description": "Cursor for the next page of items"})
    links = fields.Dict(keys=fields.String(), values=fields.String())


class BatchQuerySchema(WaitQuerySchema):
    cursor = fields.String(
        validate=validate.Length(max=20), metadata={"description": "`next` of the previous page"}
    )
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=MAX_BATCH_PAGE))


# Seeds
class SeedSubmissionSchema(StrictSchema):
    id = fields.String(
        validate=validate.Regexp(SEED_ID, error=f"Use {SEED_ID_RULE}."),
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
        validate=validate.Length(max=MAX_SEED_ID_CHARS),
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
