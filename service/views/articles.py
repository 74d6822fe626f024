"""Articles: submit one for analysis, poll (or long-poll) for its results, list them, delete one."""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import marshmallow as ma
from flask import Response, g, request
from flask.views import MethodView

from newsdesk.results import article_location, article_view
from newsdesk.store import (
    TERMINAL,
    Article,
    ArticleSummary,
    BacklogFull,
    IdempotencyConflict,
    ListFilters,
    NewArticle,
    content_digest,
    is_store_id,
    iso_utc,
)
from service.app_context import services
from service.body import Blueprint
from service.problems import Problem
from service.schemas import (
    ArticleListQuerySchema,
    ArticlePageSchema,
    ArticleSchema,
    ArticleSubmissionSchema,
    SubmissionAcceptedSchema,
    WaitQuerySchema,
)

log = logging.getLogger(__name__)

blp = Blueprint(
    "articles", __name__, url_prefix="/v1/articles", description="Submit articles and poll for results"
)

_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
POLL_AFTER_SECONDS = "1"


def idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.match(key):
        raise Problem(
            400,
            "invalid-idempotency-key",
            "Invalid Idempotency-Key header",
            "Use 1 to 255 visible ASCII characters.",
        )
    return key


@blp.route("")
class Articles(MethodView):
    @blp.arguments(ArticleSubmissionSchema())
    @blp.response(
        202,
        SubmissionAcceptedSchema,
        headers={
            "Location": {"description": "The URL to poll", "schema": {"type": "string"}},
            "Retry-After": {
                "description": "Seconds to wait before the first poll",
                "schema": {"type": "integer"},
            },
        },
    )
    @blp.problem(400, "Malformed JSON or a bad Idempotency-Key")
    @blp.problem(401, "API keys are configured and the request has no valid one")
    @blp.problem(413, "Body over the size limit")
    @blp.problem(415, "Body is not JSON")
    @blp.problem(429, "Over the rate limit for this key or address (see Retry-After)")
    @blp.problem(503, "Storage unavailable, or the backlog is over its bound; nothing was accepted")
    def post(self, submission: dict[str, Any]) -> Any:
        """Submit an article for analysis.

        The article is stored before it is queued, and the answer is 202 with the URL to poll. Send an
        `Idempotency-Key` header to make retries safe: the same key and body return the same article.
        """
        current = services()
        key = idempotency_key()
        article = new_article(submission, g.owner)
        digest = content_digest(g.json_body) if key else ""
        with refusals_as_problems(earlier="submission", new="article"):
            submitted = current.store.create_article(
                article,
                idempotency_key=key,
                digest=digest,
                max_backlog=current.settings.max_backlog,
                messages=current.queue.messages,
            )
        if submitted.created:
            # The task ids link this line to the workers' lines about the same tasks.
            log.info(
                "article accepted",
                extra={
                    "article_id": submitted.article_id,
                    "chars": len(article.text),
                    "task_ids": ",".join(message.id for message in submitted.messages),
                },
            )
        headers = {"Location": article_location(submitted.article_id), "Retry-After": POLL_AFTER_SECONDS}
        if not submitted.created:
            headers["Idempotent-Replayed"] = "true"
        # A new article is queued (reading it back would cost a round trip and its whole text); a replay
        # reports where the earlier one has got to.
        stored = None if submitted.created else current.store.get_article(submitted.article_id)
        status = stored.status if stored else "queued"
        return {
            "id": submitted.article_id,
            "status": status,
            "links": {"self": article_location(submitted.article_id)},
        }, headers

    @blp.arguments(ArticleListQuerySchema(), location="query", unknown=ma.RAISE, as_kwargs=True)
    @blp.response(200, ArticlePageSchema)
    @blp.problem(400, "A cursor that this service did not make")
    @blp.problem(401, "API keys are configured and the request has no valid one")
    def get(self, **query: Any) -> Any:
        """Your recent articles, newest first, with filters and cursor pagination.

        Filters: `status`, `duplicate`, `stance.us` / `stance.russia` / `stance.un` (a label), `since`
        and `until` (submission time). Each call examines at most 1,000 articles, so a filtered page
        may be short (even empty) and still have a `next` cursor; follow `next` until it is null.
        """
        filters = ListFilters(
            status=query.get("status"),
            is_duplicate=query.get("duplicate"),
            stance={
                target: query[f"stance_{target}"]
                for target in ("us", "russia", "un")
                if query.get(f"stance_{target}") is not None
            },
            since_ms=_milliseconds(query.get("since")),
            until_ms=_milliseconds(query.get("until")),
        )
        after = _read_cursor(query["cursor"]) if query.get("cursor") else None
        page = services().store.list_articles(g.owner, filters, limit=query["limit"], after=after)
        return {
            "items": [_summary_view(item) for item in page.items],
            "next": _make_cursor(page.next_cursor) if page.next_cursor else None,
        }


@blp.route("/<string:article_id>")
class ArticleResource(MethodView):
    @blp.arguments(WaitQuerySchema(), location="query", unknown=ma.RAISE, as_kwargs=True)
    @blp.response(200, ArticleSchema)
    @blp.problem(401, "API keys are configured and the request has no valid one")
    @blp.problem(404, "No such article")
    @blp.problem(422, "A `wait` out of bounds")
    def get(self, article_id: str, wait: int) -> Any:
        """The article's status and each analysis's result as soon as it is ready.

        With `wait=N` (long-poll) the answer comes as soon as the article is done or failed, or after
        N seconds with whatever is ready then.
        """
        current = services()
        article = _owned_article(article_id)
        if wait and article.status not in TERMINAL:
            current.long_polls.wait(
                current.store,
                current.store.finished_channel(article_id),
                lambda: current.store.article_statuses([article_id])[0] in {*TERMINAL, None},
                wait,
            )
            article = _owned_article(article_id)
        headers = {} if article.status in TERMINAL else {"Retry-After": POLL_AFTER_SECONDS}
        return article_view(article), headers

    @blp.response(204)
    @blp.problem(401, "API keys are configured and the request has no valid one")
    @blp.problem(404, "No such article")
    def delete(self, article_id: str) -> Any:
        """Delete the article and its results now (otherwise they expire NEWSDESK_RESULT_TTL after it
        finished). Analyses still queued for it are skipped; a later GET is a 404."""
        if len(article_id) > 64 or not services().store.delete_article(article_id, g.owner):
            raise _not_found(article_id)
        log.info("article deleted", extra={"article_id": article_id})
        response = Response(status=204)
        del response.headers["Content-Type"]  # no body, so no type (flask-smorest's "" would say JSON)
        return response


def _not_found(article_id: str) -> Problem:
    return Problem(404, "article-not-found", "Article not found", f"No article has the id {article_id!r}.")


def _owned_article(article_id: str) -> Article:
    article = services().store.get_article(article_id) if is_store_id(article_id) else None
    if article is None or article.owner != g.owner:  # another key's article does not exist for you
        raise _not_found(article_id)
    return article


@contextmanager
def refusals_as_problems(*, earlier: str, new: str) -> Iterator[None]:
    """The store's refusals of a submission (an article or a batch) as the problems the client gets: the
    backlog bound's 503 (the store counts and stores in one step), and the 422 of an Idempotency-Key
    first used for another `earlier` body."""
    try:
        yield
    except BacklogFull as full:
        raise Problem(
            503,
            "overloaded",
            "Too many articles waiting",
            f"{full.waiting} articles are waiting for analysis and this would add {full.adding}, over the "
            f"bound of {services().settings.max_backlog} (NEWSDESK_MAX_BACKLOG); nothing was stored. "
            "Retry later.",
            headers={"Retry-After": "30"},
        ) from full
    except IdempotencyConflict as conflict:
        raise Problem(
            422,
            "idempotency-key-reused",
            "Idempotency-Key reused with a different body",
            f"This key was first used for another {earlier}; use a new key for a new {new}.",
            extra={"id": conflict.article_id},
        ) from conflict


def new_article(submission: dict[str, Any], owner: str) -> NewArticle:
    published = submission.get("published_at")
    return NewArticle(
        text=submission["text"],
        title=submission.get("title"),
        url=submission.get("url"),
        source=submission.get("source"),
        published_at=iso_utc(published) if published else None,  # in UTC already: see the schema
        options=submission.get("options") or {},
        owner=owner,
        callback_url=submission.get("callback_url"),
    )


def _milliseconds(moment: Any) -> int | None:
    return int(moment.timestamp() * 1000) if moment is not None else None


def _make_cursor(position: tuple[int, str]) -> str:
    return base64.urlsafe_b64encode(f"{position[0]}:{position[1]}".encode()).decode().rstrip("=")


def _read_cursor(cursor: str) -> tuple[int, str]:
    try:
        score, _, article_id = (
            base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().partition(":")
        )
        if not re.fullmatch(r"[0-9a-f]{32}", article_id):
            raise ValueError(article_id)
        return int(score), article_id
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise Problem(
            400, "invalid-cursor", "Invalid cursor", "Pass the `next` value of a previous page unchanged."
        ) from error


def _summary_view(item: ArticleSummary) -> dict[str, Any]:
    return {
        "id": item.id,
        "status": item.status,
        "created_at": item.created_at,
        "finished_at": item.finished_at,
        "expires_at": item.expires_at,
        "title": item.title,
        "source": item.source,
        "batch": item.batch,
        "is_duplicate": item.is_duplicate,
        "stance": item.stance,
        "links": {"self": article_location(item.id)},
    }
