"""Articles: submit one for analysis, poll for its results."""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import g, request
from flask.views import MethodView
from kombu.exceptions import OperationalError

from newsdesk import logs
from newsdesk.store import AnalysisState, Article, IdempotencyConflict, NewArticle, content_digest
from service.app_context import services
from service.body import Blueprint, check_text_length
from service.problems import Problem, redis_unavailable_problem
from service.schemas import ArticleSchema, ArticleSubmissionSchema, SubmissionAcceptedSchema

log = logging.getLogger(__name__)

blp = Blueprint(
    "articles", __name__, url_prefix="/v1/articles", description="Submit articles and poll for results"
)

_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
POLL_AFTER_SECONDS = "1"


def _idempotency_key() -> str | None:
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


def _location(article_id: str) -> str:
    return f"/v1/articles/{article_id}"


@blp.route("")
class Articles(MethodView):
    @blp.arguments(ArticleSubmissionSchema)
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
        check_text_length(submission["text"], current.settings.max_text_chars)
        key = _idempotency_key()
        backlog = current.store.pending_count()
        if backlog >= current.settings.max_backlog:
            raise Problem(
                503,
                "overloaded",
                "Too many articles waiting",
                f"{backlog} articles are waiting for analysis; nothing was stored. Retry later.",
                headers={"Retry-After": "30"},
            )
        published = submission.get("published_at")
        article = NewArticle(
            text=submission["text"],
            title=submission.get("title"),
            url=submission.get("url"),
            source=submission.get("source"),
            published_at=published.isoformat() if published else None,
            options=submission.get("options") or {},
            owner=g.owner,
        )
        digest = content_digest(g.json_body) if key else ""
        try:
            submitted = current.store.create_article(article, idempotency_key=key, digest=digest)
        except IdempotencyConflict as conflict:
            raise Problem(
                422,
                "idempotency-key-reused",
                "Idempotency-Key reused with a different body",
                "This key was first used for another submission; use a new key for a new article.",
                extra={"id": conflict.article_id},
            ) from conflict
        with logs.bound(article_id=submitted.article_id):
            if submitted.created:
                try:
                    current.queue.enqueue(submitted.article_id)
                except OperationalError as error:
                    # Stored but not queued: the sweeper re-queues it; the client may retry with its key.
                    log.warning("enqueue failed", extra={"error": str(error)})
                    raise redis_unavailable_problem() from error
                log.info("article accepted", extra={"chars": len(article.text)})
        headers = {"Location": _location(submitted.article_id), "Retry-After": POLL_AFTER_SECONDS}
        if not submitted.created:
            headers["Idempotent-Replayed"] = "true"
        # A new article is queued (reading it back would cost a round trip and its whole text); a replay
        # reports where the earlier one has got to.
        stored = None if submitted.created else current.store.get_article(submitted.article_id)
        status = stored.status if stored else "queued"
        return {
            "id": submitted.article_id,
            "status": status,
            "links": {"self": _location(submitted.article_id)},
        }, headers


@blp.route("/<string:article_id>")
class ArticleResource(MethodView):
    @blp.response(200, ArticleSchema)
    @blp.problem(401, "API keys are configured and the request has no valid one")
    @blp.problem(404, "No such article")
    def get(self, article_id: str) -> Any:
        """The article's status and each analysis's result as soon as it is ready."""
        article = services().store.get_article(article_id) if len(article_id) <= 64 else None
        if article is None or article.owner != g.owner:  # another key's article does not exist for you
            raise Problem(
                404, "article-not-found", "Article not found", f"No article has the id {article_id!r}."
            )
        headers = {} if article.status in {"done", "failed"} else {"Retry-After": POLL_AFTER_SECONDS}
        return article_view(article), headers


def article_view(article: Article) -> dict[str, Any]:
    """The public shape of a stored article and its results."""
    view: dict[str, Any] = {"id": article.id, "status": article.status, **article.metadata}
    view.update(
        options=article.options,
        text_length=len(article.text),
        created_at=article.created_at,
        updated_at=article.updated_at,
    )
    if article.finished_at:
        view["finished_at"] = article.finished_at
    for name, state in article.analyses.items():
        view[name] = _analysis_block(state)
    view["links"] = {"self": _location(article.id)}
    return view


def _analysis_block(state: AnalysisState) -> dict[str, Any]:
    block: dict[str, Any] = {"status": state.status}
    if state.status == "done" and state.result is not None:
        block.update(state.result)
    if state.version:
        block["version"] = state.version
    if state.status == "failed" and state.error:
        block["error"] = state.error
    if state.finished_at and state.status in {"done", "failed"}:
        block["finished_at"] = state.finished_at
    return block
