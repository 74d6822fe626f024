"""Health: is the process up (`/healthz`), can it do its job (`/readyz`)."""

from __future__ import annotations

from typing import Any

import redis
from flask.views import MethodView

from newsdesk.health import REDIS_FULL, WORKER_MAX_AGE_SECONDS, redis_failure
from service.app_context import services
from service.body import Blueprint
from service.problems import Problem
from service.schemas import HealthSchema

blp = Blueprint("health", __name__, description="Liveness and readiness")


@blp.route("/healthz")
class Liveness(MethodView):
    @blp.response(200, HealthSchema)
    def get(self) -> Any:
        """The API process is up. Touches nothing else."""
        return {"status": "ok"}


@blp.route("/readyz")
class Readiness(MethodView):
    @blp.response(200, HealthSchema)
    @blp.problem(503, "Redis unreachable or full, or no live worker")
    def get(self) -> Any:
        """Redis answers and takes writes, and at least one worker is alive."""
        store = services().store
        checks: dict[str, Any] = {}
        try:
            store.ping()
            full = store.memory_full()
            checks["redis"] = REDIS_FULL if full else "ok"
            workers = len(store.live_workers(WORKER_MAX_AGE_SECONDS))
            # A full Redis refuses the heartbeats too: no fresh one then says nothing about the workers.
            checks["workers"] = "unknown" if full and not workers else workers
        except redis.RedisError as error:
            checks["redis"] = redis_failure(error)
            checks["workers"] = "unknown"
        if checks["redis"] == REDIS_FULL:
            detail = (
                "Redis is full: at its memory limit it refuses writes, so no article can be stored and "
                "workers cannot write their heartbeat. Raise its maxmemory or free memory in it."
            )
        elif checks["redis"] != "ok":
            detail = f"Redis is {checks['redis']}."
        elif not checks["workers"]:
            detail = f"No worker is alive (none wrote a heartbeat in the last {WORKER_MAX_AGE_SECONDS:g} s)."
        else:
            return {"status": "ok", "checks": checks}
        raise Problem(
            503, "not-ready", "Not ready", detail, headers={"Retry-After": "5"}, extra={"checks": checks}
        )
