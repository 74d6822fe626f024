"""Load generation: a small asyncio HTTP/1.1 client (keep-alive connections, requests made in advance) so
that the client spends as little CPU as possible while it drives the API as hard as it can."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class BurstResult:
    sent: int
    accepted: int  # 202s
    seconds: float
    statuses: dict[int, int]
    article_ids: list[str]
    latencies_ms: list[float]
    client_cpu_s: float


def submission_request(host: str, port: int, text: str) -> bytes:
    body = json.dumps({"text": text}).encode()
    head = (
        f"POST /v1/articles HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep the connection) of one response with a Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {
        name.strip().lower(): value.strip() for name, _, value in (x.partition(":") for x in lines[1:])
    }
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, body, headers.get("connection", "").lower() != "close"


async def _burst(url: str, texts: Sequence[str], connections: int, duration: float | None) -> BurstResult:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = [submission_request(host, port, text) for text in texts]
    statuses: dict[int, int] = {}
    ids: list[str] = []
    latencies: list[float] = []
    next_index = 0
    sent = 0
    started = time.perf_counter()
    deadline = started + duration if duration is not None else None

    async def connection() -> None:
        nonlocal next_index, sent
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while (time.perf_counter() < deadline) if deadline is not None else next_index < len(requests):
                request = requests[next_index % len(requests)]
                next_index += 1
                sent += 1
                began = time.perf_counter()
                writer.write(request)
                status, body, keep = await _read_response(reader)
                latencies.append((time.perf_counter() - began) * 1000)
                statuses[status] = statuses.get(status, 0) + 1
                if status == 202:
                    ids.append(json.loads(body)["id"])
                if not keep:
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
        finally:
            writer.close()

    cpu_before = time.process_time()
    await asyncio.gather(*(connection() for _ in range(connections)))
    seconds = time.perf_counter() - started
    return BurstResult(
        sent, statuses.get(202, 0), seconds, statuses, ids, latencies, time.process_time() - cpu_before
    )


def burst(
    url: str, texts: Sequence[str], *, connections: int = 8, duration: float | None = None
) -> BurstResult:
    """Submit `texts` (each once; or cycling through them until `duration` seconds have passed) over
    `connections` concurrent keep-alive connections, each sending its next request once the last is answered.
    """
    return asyncio.run(_burst(url, texts, connections, duration))
