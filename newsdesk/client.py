"""A small Python client for the newsdesk API: submit articles, fetch results, wait for them."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

TERMINAL = frozenset({"done", "failed"})


class NewsdeskError(Exception):
    """The API answered with an error; `problem` holds its problem+json body."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{status} {problem.get('title', '')}: {problem.get('detail', '')}".strip())
        self.status = status
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Submitted:
    id: str
    status: str


class NewsdeskClient:
    def __init__(
        self, base_url: str = "http://127.0.0.1:8000", *, api_key: str | None = None, timeout: float = 10.0
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, headers=headers)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> NewsdeskClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def submit(
        self,
        text: str,
        *,
        title: str | None = None,
        url: str | None = None,
        source: str | None = None,
        published_at: str | None = None,
        options: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Submitted:
        """Submit an article; retried safely on connection errors thanks to an Idempotency-Key."""
        body: dict[str, Any] = {"text": text}
        for name, value in (
            ("title", title),
            ("url", url),
            ("source", source),
            ("published_at", published_at),
        ):
            if value is not None:
                body[name] = value
        if options:
            body["options"] = options
        key = idempotency_key or uuid.uuid4().hex
        for attempt in range(3):
            try:
                response = self._http.post("/v1/articles", json=body, headers={"Idempotency-Key": key})
                break
            except httpx.TransportError:
                if attempt == 2:
                    raise
                time.sleep(0.5 * (attempt + 1))
        data = self._checked(response)
        return Submitted(id=data["id"], status=data["status"])

    def get(self, article_id: str) -> dict[str, Any]:
        return self._checked(self._http.get(f"/v1/articles/{article_id}"))

    def wait(self, article_id: str, *, timeout: float = 120.0, interval: float = 0.25) -> dict[str, Any]:
        """Poll until the article is done or failed; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            article = self.get(article_id)
            if article["status"] in TERMINAL:
                return article
            if time.monotonic() > deadline:
                raise TimeoutError(f"article {article_id} still {article['status']} after {timeout} s")
            time.sleep(interval)

    def _checked(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"title": response.reason_phrase, "detail": response.text[:200]}
            raise NewsdeskError(response.status_code, problem)
        return response.json()  # type: ignore[no-any-return]
