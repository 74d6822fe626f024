"""Batches: submit many articles in one request; follow them together, item by item or all at once."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import marshmallow as ma
from flask import g
from flask.views import MethodView

from newsdesk.results import article_location
from newsdesk.store import (
    TERMINAL,
    Batch,
    NewArticle,
    Rejected,
    content_digest,
    is_store_id,
)
from service.app_context import services
from service.body import Blueprint
from service.problems import VALIDATION_TITLE, Problem, field_errors, invalid
from service.schemas import ArticleSubmissionSchema, BatchQuerySchema, BatchSchema, BatchSubmissionSchema
from service.views.articles import (
    POLL_AFTER_SECONDS,
    idempotency_key,
    new_article,
    refusals_as_problems,
)

log = logging.getLogger(__name__)

blp = Blueprint(
    "batches", __name__, url_prefix="/v1/batches", description="Submit many articles at once, follow them"
)

_ITEM_SCHEMA = ArticleSubmissionSchema()


def _location(batch_id: str) -> str:
    return f"/v1/batches/{batch_id}"


def check_item(index: int, raw: Any, owner: str) -> NewArticle | Rejected:
    """One batch item, checked exactly as POST /v1/articles checks a body."""
    try:
        submission = _ITEM_SCHEMA.load(raw)
    except ma.ValidationError as error:
        messages = error.messages if isinstance(error.messages, dict) else {"_schema": error.messages}
        return Rejected(index, invalid(field_errors(messages), "article").document())
    return new_article(submission, owner)


@blp.route("")
class Batches(MethodView):
    @blp.arguments(BatchSubmissionSchema())
    @blp.response(
        202,
        BatchSchema,
        headers={"Location": {"description": "The URL of the batch", "schema": {"type": "string"}}},
    )
    @blp.problem(400, "Malformed JSON or a bad Idempotency-Key")
    @blp.problem(401, "API keys are configured and the request has no valid one")
    @blp.problem(413, "Body over the size limit, or more articles than NEWSDESK_MAX_BATCH")
    @blp.problem(415, "Body is not JSON")
    @blp.problem(429, "Over the rate limit for this key or address (see Retry-After)")
    @blp.problem(503, "Storage unavailable, or the backlog is over its bound; nothing was accepted")
    def post(self, body: dict[str, Any]) -> Any:
        """Submit up to NEWSDESK_MAX_BATCH articles.

        Each item is checked on its own: a bad one is rejected with its index and a problem saying why,
        while the good ones are stored and queued, all in one step (a batch is never stored half-way).
        When no item is valid, nothing is stored and the answer is 422 with each item's reason. An
        `Idempotency-Key` makes a retry return the same batch.
        """
        current = services()
        raw_items = body["articles"]
        if len(raw_items) > current.settings.max_batch:
            raise Problem(
                413,
                "batch-too-large",
                "Too many articles in one batch",
                f"{len(raw_items)} articles; a batch holds at most {current.settings.max_batch} "
                "(NEWSDESK_MAX_BATCH). Split it.",
                extra={"max_batch": current.settings.max_batch},
            )
        items = [check_item(index, raw, g.owner) for index, raw in enumerate(raw_items)]
        accepted = [item for item in items if isinstance(item, NewArticle)]
        if not accepted:
            raise Problem(
                422,
                "validation-error",
                VALIDATION_TITLE,
                "No article in the batch is valid: see `items` for each one's reason; nothing was stored.",
                extra={
                    "items": [
                        {"index": item.index, **item.problem} for item in items if isinstance(item, Rejected)
                    ]
                },
            )
        key = idempotency_key()
        digest = content_digest(g.json_body) if key else ""
        with refusals_as_problems(earlier="batch", new="batch"):
            submitted = current.store.create_batch(
                g.owner,
                items,
                idempotency_key=key,
                digest=digest,
                max_backlog=current.settings.max_backlog,
                messages=current.queue.messages,
            )
        batch = current.store.get_batch(submitted.batch_id)
        if batch is None:  # expired between the replay and this read
            raise Problem(404, "batch-not-found", "Batch not found", "The batch has expired.")
        if submitted.created:
            log.info("batch accepted", extra={"batch_id": batch.id, "accepted": batch.accepted})
        g.batch_outcomes = {  # for /metrics: each article counts as one submission
            "accepted" if submitted.created else "replayed": len(accepted),
            "rejected": len(items) - len(accepted),
        }
        headers = {"Location": _location(batch.id)}
        if not submitted.created:
            headers["Idempotent-Replayed"] = "true"
        return _batch_view(batch, start=0, limit=current.settings.max_batch), headers


@blp.route("/<string:batch_id>")
class BatchResource(MethodView):
    @blp.arguments(BatchQuerySchema(), location="query", unknown=ma.RAISE, as_kwargs=True)
    @blp.response(200, BatchSchema)
    @blp.problem(400, "A cursor that this service did not make")
    @blp.problem(401, "API keys are configured and the request has no valid one")
    @blp.problem(404, "No such batch")
    @blp.problem(422, "A `wait` or `limit` out of bounds")
    def get(self, batch_id: str, wait: int, limit: int, cursor: str | None = None) -> Any:
        """The batch's counts per status, and its items (with each article's status), a page at a time.

        With `wait=N` (long-poll) the answer comes as soon as every accepted article is finished, or
        after N seconds.
        """
        current = services()
        start = _read_cursor(cursor) if cursor else 0
        batch = _owned_batch(batch_id)
        if wait and not _finished(batch):
            current.long_polls.wait(
                current.store, current.store.batch_finished_channel(batch_id), lambda: _finished(batch), wait
            )
            batch = _owned_batch(batch_id)
        view = _batch_view(batch, start=start, limit=limit)
        return view, {} if view["status"] == "finished" else {"Retry-After": POLL_AFTER_SECONDS}


def _owned_batch(batch_id: str) -> Batch:
    batch = services().store.get_batch(batch_id) if is_store_id(batch_id) else None
    if batch is None or batch.owner != g.owner:
        raise Problem(404, "batch-not-found", "Batch not found", f"No batch has the id {batch_id!r}.")
    return batch


def _counts(batch: Batch) -> Counter[str]:
    statuses = services().store.article_statuses(batch.article_ids)
    return Counter(status or "gone" for status in statuses)


def _finished(batch: Batch) -> bool:
    counts = _counts(batch)
    return sum(counts[status] for status in (*TERMINAL, "gone")) == batch.accepted


def _read_cursor(cursor: str) -> int:
    if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 9:  # "²" is a digit too
        raise Problem(
            400, "invalid-cursor", "Invalid cursor", "Pass the `next` value of a previous page unchanged."
        )
    return int(cursor)


def _batch_view(batch: Batch, *, start: int, limit: int) -> dict[str, Any]:
    counts = _counts(batch)
    finished = sum(counts[status] for status in (*TERMINAL, "gone")) == batch.accepted
    items = services().store.batch_items(batch.id, start, limit)
    views: list[dict[str, Any]] = []
    for item in items:
        view: dict[str, Any] = {"index": item.index, "status": item.status}
        if item.article_id:
            view["id"] = item.article_id
            view["links"] = {"self": article_location(item.article_id)}
        if item.problem:
            view["problem"] = item.problem
        views.append(view)
    end = start + len(items)
    return {
        "id": batch.id,
        "status": "finished" if finished else "running",
        "created_at": batch.created_at,
        "total": batch.total,
        "accepted": batch.accepted,
        "rejected": batch.total - batch.accepted,
        "counts": {status: counts[status] for status in ("queued", "running", "done", "failed", "gone")},
        "items": views,
        "next": str(end) if end < batch.total else None,
        "links": {"self": _location(batch.id)},
    }
