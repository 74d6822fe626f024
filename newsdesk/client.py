"""A small Python client for the newsdesk API: submit articles (one or many), wait for results, list, delete.

    with NewsdeskClient("http://127.0.0.1:8000", api_key="nd_...") as client:
        submitted = client.submit("Russia and the United States ...", title="Talks")
        result = client.wait(submitted.id)          # long-polls: returns as soon as it is finished
        print(result.status, result.stance["targets"]["russia"]["label"])

Errors are raised as `NewsdeskError` with the problem details (`.status`, `.type`, `.problem`).
"""

from __future__ import annotations

import builtins
import functools
import math
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypedDict, TypeVar

import httpx

TERMINAL = frozenset({"done", "failed"})
MAX_WAIT = 60  # the service's default bound on one long-poll (NEWSDESK_MAX_WAIT)
# How the service's 422 names its bound on `wait` (service/schemas.py), when NEWSDESK_MAX_WAIT is lower.
_WAIT_BOUND = re.compile(r"at most (\d+) seconds")
_Polled = TypeVar("_Polled")


class NewsdeskError(Exception):
    """The API answered with an error; `problem` holds its problem+json body."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{status} {problem.get('title', '')}: {problem.get('detail', '')}".strip())
        self.status = status
        self.problem = problem

    @property
    def type(self) -> str:
        return str(self.problem.get("type", ""))

    @property
    def errors(self) -> list[dict[str, str]]:
        return list(self.problem.get("errors") or [])


class ArticleInput(TypedDict, total=False):
    """One article to submit, as the API takes it (only `text` is required)."""

    text: str
    title: str
    url: str
    source: str
    published_at: str
    options: dict[str, Any]
    callback_url: str


@dataclass(frozen=True, slots=True)
class Submitted:
    id: str
    status: str


@dataclass(frozen=True, slots=True)
class ArticleResult:
    """An article's status and results, as GET /v1/articles/{id} returns them."""

    id: str
    status: str
    created_at: str
    summary: dict[str, Any]
    stance: dict[str, Any]
    duplicates: dict[str, Any]
    finished_at: str | None = None
    expires_at: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)  # the whole answer

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ArticleResult:
        return cls(
            id=data["id"],
            status=data["status"],
            created_at=data.get("created_at", ""),
            summary=data.get("summary", {}),
            stance=data.get("stance", {}),
            duplicates=data.get("duplicates", {}),
            finished_at=data.get("finished_at"),
            expires_at=data.get("expires_at"),
            raw=dict(data),
        )

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    @property
    def is_duplicate(self) -> bool | None:
        value = self.duplicates.get("is_duplicate")
        return None if value is None else bool(value)


@dataclass(frozen=True, slots=True)
class BatchItem:
    index: int
    status: str  # an article status, "rejected" or "gone"
    id: str | None = None
    problem: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class BatchStatus:
    id: str
    status: str  # "running" or "finished"
    total: int
    accepted: int
    rejected: int
    counts: dict[str, int]
    items: list[BatchItem]
    next: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BatchStatus:
        return cls(
            id=data["id"],
            status=data["status"],
            total=data["total"],
            accepted=data["accepted"],
            rejected=data["rejected"],
            counts=dict(data.get("counts") or {}),
            items=[
                BatchItem(item["index"], item["status"], item.get("id"), item.get("problem"))
                for item in data.get("items", [])
            ],
            next=data.get("next"),
        )


@dataclass(frozen=True, slots=True)
class ArticlePage:
    items: list[dict[str, Any]]
    next: str | None


class NewsdeskClient:
    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        max_connections: int = 16,
        transport: httpx.BaseTransport | None = None,  # httpx's: a proxy set-up, or a WSGI app in-process
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = timeout
        self.max_wait = MAX_WAIT  # the longest long-poll asked for; lowered to a service's lower bound
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            headers=headers,
            limits=httpx.Limits(max_connections=max_connections),
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> NewsdeskClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # one article
    def submit(
        self,
        text: str,
        *,
        title: str | None = None,
        url: str | None = None,
        source: str | None = None,
        published_at: str | None = None,
        options: dict[str, Any] | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> Submitted:
        """Submit an article; retried safely on connection errors and 503s thanks to an Idempotency-Key."""
        body: dict[str, Any] = {"text": text}
        for name, value in (
            ("title", title),
            ("url", url),
            ("source", source),
            ("published_at", published_at),
            ("options", options),
            ("callback_url", callback_url),
        ):
            if value:
                body[name] = value
        data = self._post_idempotent("/v1/articles", body, idempotency_key)
        return Submitted(id=data["id"], status=data["status"])

    def get(self, article_id: str, *, wait: float = 0) -> ArticleResult:
        """The article now, or (with `wait` seconds, rounded up, at most the service's NEWSDESK_MAX_WAIT)
        as soon as it finishes within that time."""
        return ArticleResult.from_json(self._long_poll(f"/v1/articles/{article_id}", {}, wait))

    def wait(self, article_id: str, *, timeout: float = 120.0) -> ArticleResult:
        """Long-poll until the article is done or failed; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        status = "unread"
        while True:
            asked = time.monotonic()
            article = _unless_unreachable(
                functools.partial(self.get, article_id, wait=deadline - asked), deadline
            )
            if article is not None:
                if article.finished:
                    return article
                status = article.status
            _pause_unless_held(asked, deadline, f"article {article_id} still {status} after {timeout} s")

    def delete(self, article_id: str) -> None:
        self._checked(self._http.delete(f"/v1/articles/{article_id}"))

    def list(
        self,
        *,
        status: str | None = None,
        duplicate: bool | None = None,
        stance: Mapping[str, str] | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> ArticlePage:
        """One page of your recent articles, newest first; pass `next` back as `cursor`."""
        params: dict[str, Any] = {"limit": limit}
        for name, value in (("status", status), ("since", since), ("until", until), ("cursor", cursor)):
            if value is not None:
                params[name] = value
        if duplicate is not None:
            params["duplicate"] = "true" if duplicate else "false"
        for target, label in (stance or {}).items():
            params[f"stance.{target}"] = label
        data = self._checked(self._http.get("/v1/articles", params=params))
        return ArticlePage(items=data["items"], next=data["next"])

    def iter_articles(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every listed article across pages."""
        cursor = None
        while True:
            page = self.list(cursor=cursor, **filters)
            yield from page.items
            if page.next is None:
                return
            cursor = page.next

    # many articles
    def submit_batch(
        self, articles: Sequence[ArticleInput], *, idempotency_key: str | None = None
    ) -> BatchStatus:
        """One batch (at most the service's NEWSDESK_MAX_BATCH); rejected items are in `items`."""
        data = self._post_idempotent("/v1/batches", {"articles": list(articles)}, idempotency_key)
        return BatchStatus.from_json(data)

    def get_batch(
        self, batch_id: str, *, wait: float = 0, cursor: str | None = None, limit: int = 100
    ) -> BatchStatus:
        """The batch's counts and a page of its items; with `wait`, as soon as all are finished."""
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        return BatchStatus.from_json(self._long_poll(f"/v1/batches/{batch_id}", params, wait))

    def submit_many(
        self,
        articles: Sequence[ArticleInput],
        *,
        batch_size: int = 100,
        concurrency: int = 4,
        wait: bool = False,
        timeout: float = 600.0,
        on_result: Callable[[int, ArticleResult | NewsdeskError], None] | None = None,
    ) -> builtins.list[ArticleResult | NewsdeskError]:
        """Submit many articles through the batches endpoint, `concurrency` batches at a time.

        Returns one entry per article, in order: its result (finished if `wait`, else as submitted) or
        the NewsdeskError that rejected it. `on_result(index, entry)` is called as each one is known
        (for a progress bar).
        """
        chunks = [
            (start, articles[start : start + batch_size]) for start in range(0, len(articles), batch_size)
        ]
        results: list[ArticleResult | NewsdeskError | None] = [None] * len(articles)

        def settle(index: int, entry: ArticleResult | NewsdeskError) -> None:
            results[index] = entry
            if on_result is not None:
                on_result(index, entry)

        def run(start: int, chunk: Sequence[ArticleInput]) -> None:
            try:
                batch = self.submit_batch(chunk)
            except NewsdeskError as error:
                items = error.problem.get("items")
                for offset in range(len(chunk)):
                    problem = items[offset] if isinstance(items, list) and offset < len(items) else None
                    settle(start + offset, NewsdeskError(error.status, problem or error.problem))
                return
            for item in batch.items:
                if item.id is None:
                    settle(start + item.index, NewsdeskError(422, item.problem or {}))
                elif not wait:
                    settle(start + item.index, self.get(item.id))
            if wait:
                self._wait_batch(batch, start, settle, deadline=time.monotonic() + timeout)

        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            for future in [pool.submit(run, start, chunk) for start, chunk in chunks]:
                future.result()
        return [entry for entry in results if entry is not None]

    def _wait_batch(
        self,
        batch: BatchStatus,
        start: int,
        settle: Callable[[int, ArticleResult | NewsdeskError], None],
        *,
        deadline: float,
    ) -> None:
        pending = {item.index for item in batch.items if item.id is not None}
        asked = None
        while pending:
            if asked is not None:
                _pause_unless_held(asked, deadline, f"batch {batch.id}: {len(pending)} articles unfinished")
            asked = time.monotonic()
            # 1,000 is the largest page, and the service accepts no larger batch.
            poll = functools.partial(self.get_batch, batch.id, wait=deadline - asked, limit=1000)
            if (status := _unless_unreachable(poll, deadline)) is None:
                continue
            for item in status.items:
                if item.index in pending and item.id and item.status in {*TERMINAL, "gone"}:
                    pending.discard(item.index)
                    try:
                        entry: ArticleResult | NewsdeskError = self.get(item.id)
                    except NewsdeskError as error:  # deleted meanwhile
                        entry = error
                    settle(start + item.index, entry)

    # plumbing
    def _post_idempotent(self, path: str, body: dict[str, Any], key: str | None) -> dict[str, Any]:
        headers = {"Idempotency-Key": key or uuid.uuid4().hex}
        for attempt in range(4):
            try:
                response = self._http.post(path, json=body, headers=headers)
            except httpx.TransportError:
                if attempt == 3:
                    raise
            else:
                if response.status_code != 503 or attempt == 3:
                    return self._checked(response)
            time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _long_poll(self, path: str, params: dict[str, Any], wait: float) -> dict[str, Any]:
        """GET, held by the service for up to `wait` seconds (rounded up: a fraction still waits). A
        service whose NEWSDESK_MAX_WAIT is below the client's bound refuses the wait with a 422 naming
        its bound; the request is made again within it, and later ones keep to it."""
        while True:
            seconds = min(math.ceil(max(wait, 0)), self.max_wait)
            query = {**params, "wait": seconds} if seconds else params
            response = self._http.get(path, params=query or None, timeout=self._timeout + seconds)
            if seconds and response.status_code == 422 and (bound := _wait_bound(response)) is not None:
                self.max_wait = min(bound, seconds - 1)
                continue
            return self._checked(response)

    def _checked(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"title": response.reason_phrase, "detail": response.text[:200]}
            raise NewsdeskError(response.status_code, problem)
        if response.status_code == 204:
            return {}
        return response.json()  # type: ignore[no-any-return]


def _wait_bound(response: httpx.Response) -> int | None:
    """The bound a 422 sets on `wait`, or None when the 422 is about something else."""
    try:
        errors = response.json().get("errors") or []
    except ValueError:
        return None
    for error in errors:
        if isinstance(error, dict) and error.get("field") == "wait":
            named = _WAIT_BOUND.search(str(error.get("message", "")))
            return int(named.group(1)) if named else 0  # a bound it does not name: no long-poll
    return None


def _unless_unreachable(poll: Callable[[], _Polled], deadline: float) -> _Polled | None:
    """poll(), or None when the API could not be reached and the deadline is not past: a GET is safe to
    repeat, and the API may be restarting (a deploy) or the network blinked."""
    try:
        return poll()
    except httpx.TransportError:
        if time.monotonic() >= deadline:
            raise
        return None


def _pause_unless_held(asked: float, deadline: float, timed_out: str) -> None:
    """Between two polls of something unfinished: TimeoutError past the deadline; else, if the service
    answered at once (it does not hold requests: NEWSDESK_MAX_WAIT=0), wait a second before the next."""
    now = time.monotonic()
    if now >= deadline:
        raise TimeoutError(timed_out)
    if now - asked < 1:
        time.sleep(min(1.0, deadline - now))
