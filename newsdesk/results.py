"""The public shape of an article's results: one definition for the API, webhooks and the result stream."""

from __future__ import annotations

from typing import Any

from newsdesk.store import Article, analysis_block


def article_location(article_id: str) -> str:
    return f"/v1/articles/{article_id}"


def article_view(article: Article) -> dict[str, Any]:
    """What GET /v1/articles/{id} answers and a webhook delivers."""
    view: dict[str, Any] = {"id": article.id, "status": article.status, **article.metadata}
    view.update(
        options=article.options,
        text_length=len(article.text),
        created_at=article.created_at,
        updated_at=article.updated_at,
    )
    if article.finished_at:
        view["finished_at"] = article.finished_at
    if article.expires_at:
        view["expires_at"] = article.expires_at
    if article.batch:
        view["batch"] = article.batch
    if article.callback_url:
        view["callback"] = {"url": article.callback_url, "status": article.webhook or "waiting"}
    for name, state in article.analyses.items():
        view[name] = analysis_block(state)
    view["links"] = {"self": article_location(article.id)}
    return view
