"""GET /metrics in the Prometheus text format, and the hook that times every request.

The counters and histograms live in Redis (newsdesk/metrics.py): every gunicorn process and every API
container adds its requests to the same totals, and the workers add their analyses, so any API process
answers a scrape with the figures of the whole service. Gauges (workers, queue depths, unfinished
articles, seeds) are read from Redis at scrape time. Like /healthz, /metrics needs no API key.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from werkzeug.wrappers import Response as BaseResponse

from newsdesk.health import WORKER_MAX_AGE_SECONDS
from newsdesk.metrics import COUNTERS, HISTOGRAMS, REQUEST_DURATION, SUBMISSIONS, Update
from newsdesk.store import Store
from service.app_context import Services, services
from service.queue import CeleryQueue
from workers.celery_app import CeleryBrokerView

QueueDepths = Callable[[], Mapping[str, int]]  # queue name -> messages waiting

# Label values come from a fixed set, so a client cannot grow the series without bound.
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
SUBMIT_ROUTE = "/v1/articles"
BATCH_ROUTE = "/v1/batches"
# The classic text format, which every Prometheus version reads (the body is the same for our names).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ServiceCollector(Collector):
    """Reads the service's figures from Redis at each scrape."""

    def __init__(self, store: Store, queue_depths: QueueDepths | None) -> None:
        self.store = store
        self.queue_depths = queue_depths

    def collect(self) -> Iterator[Metric]:
        counters, histograms = self.store.metrics.read()
        for counter in COUNTERS:
            family = CounterMetricFamily(counter.name, counter.help, labels=counter.labels)
            for labels, total in sorted(counters[counter.name].items()):
                family.add_metric(list(labels), total)
            yield family
        for histogram in HISTOGRAMS:
            histogram_family = HistogramMetricFamily(histogram.name, histogram.help, labels=histogram.labels)
            for labels, value in sorted(histograms[histogram.name].items()):
                histogram_family.add_metric(list(labels), buckets=value.cumulative, sum_value=value.sum)
            yield histogram_family
        yield GaugeMetricFamily(
            "newsdesk_workers",
            "Worker nodes with a heartbeat in the last 15 s (each runs NEWSDESK_WORKER_CONCURRENCY "
            "processes)",
            value=len(self.store.live_workers(WORKER_MAX_AGE_SECONDS)),
        )
        yield GaugeMetricFamily(
            "newsdesk_articles_unfinished",
            "Stored articles not yet done or failed (queued or running)",
            value=self.store.pending_count(),
        )
        yield GaugeMetricFamily(
            "newsdesk_seeds", "Seeds in the duplicate corpus", value=self.store.count_seeds()
        )
        depths = GaugeMetricFamily("newsdesk_queue_depth", "Tasks waiting in each queue", labels=["queue"])
        if self.queue_depths is not None:
            for queue, waiting in sorted(self.queue_depths().items()):
                depths.add_metric([queue], waiting)
        yield depths


def install_metrics(app: Flask, current: Services) -> None:
    """Time every request, count submissions, and serve GET /metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(current.store, _queue_depths(current)))
    app.after_request(_record_request)
    app.add_url_rule("/metrics", "metrics", lambda: _exposition(registry), methods=["GET"])


def _queue_depths(current: Services) -> QueueDepths | None:
    """The broker's queue depths; None for a queue that is not the Celery broker (the unit tests')."""
    if not isinstance(current.queue, CeleryQueue):
        return None
    return CeleryBrokerView(current.queue.celery, current.store.redis, current.settings).queue_depths


def _exposition(registry: CollectorRegistry) -> Response:
    # Every figure is read with the store's client: an unreachable Redis is the app's 503, as anywhere.
    body = generate_latest(registry)
    return Response(body, mimetype=None, content_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})


def _record_request(response: BaseResponse) -> BaseResponse:
    started = g.get("started")
    if started is None:
        return response
    elapsed = time.perf_counter() - started
    endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
    method = request.method if request.method in _METHODS else "other"
    updates: list[list[Update]] = [
        REQUEST_DURATION.observe(elapsed, method, endpoint, str(response.status_code))
    ]
    if endpoint == SUBMIT_ROUTE and method == "POST":
        updates.append(SUBMISSIONS.inc(_submission_outcome(response)))
    # A batch counts each of its articles: the batch view leaves its per-outcome counts in g.
    batch_outcomes: dict[str, int] = g.get("batch_outcomes", {})
    if endpoint == BATCH_ROUTE and method == "POST" and response.status_code >= 400 and not batch_outcomes:
        # Refused whole (no valid item, too many, the backlog, ...): the view left no counts, and each
        # article the client sent is still a submission refused, as one sent alone would be.
        batch_outcomes = {_submission_outcome(response): _articles_sent()}
    for outcome, amount in batch_outcomes.items():
        if amount:
            updates.append(SUBMISSIONS.inc(outcome, amount=amount))
    recorder = services().store.metrics
    # Written once the response has gone out, so the client never waits on it.
    response.call_on_close(lambda: recorder.record(*updates))
    return response


def _articles_sent() -> int:
    """The articles in a batch's body; 1 for a body that was not read (too large, not JSON, no key) or
    has no list of articles, so a refused request always counts."""
    body = g.get("json_body")
    articles = body.get("articles") if isinstance(body, dict) else None
    return max(len(articles), 1) if isinstance(articles, list) else 1


def _submission_outcome(response: BaseResponse) -> str:
    if response.status_code >= 500:
        return "unavailable"
    if response.status_code >= 400:
        return "rejected"
    return "replayed" if response.headers.get("Idempotent-Replayed") == "true" else "accepted"
