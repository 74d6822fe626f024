"""Health: is the process up (`/healthz`), can it do its job (`/readyz`)."""

from __future__ import annotations

from typing import Any

import redis
from flask.views import MethodView

from service.app_context import services
from service.body import Blueprint
from service.problems import Problem
from service.schemas import HealthSchema

blp = Blueprint("health", __name__, description="Liveness and readiness")

# A worker writes a heartbeat every 5 s; three missed beats and it counts as gone.
WORKER_MAX_AGE_SECONDS = 15.0


@blp.route("/healthz")
class Liveness(MethodView):
    @blp.response(200, HealthSchema)
    def get(self) -> Any:
        """The API process is up. Touches nothing else."""
        return {"status": "ok"}


@blp.route("/readyz")
class Readiness(MethodView):
    @blp.response(200, HealthSchema)
    @blp.problem(503, "Redis unreachable or no live worker")
    def get(self) -> Any:
        """Redis answers and at least one worker is alive."""
        store = services().store
        checks: dict[str, Any] = {}
        try:
            store.ping()
            checks["redis"] = "ok"
            workers = store.live_workers(WORKER_MAX_AGE_SECONDS)
            checks["workers"] = len(workers)
        except redis.RedisError as error:
            checks["redis"] = f"unreachable ({type(error).__name__})"
            checks["workers"] = "unknown"
        if checks["redis"] != "ok" or not checks["workers"]:
            raise Problem(
                503,
                "not-ready",
                "Not ready",
                "Redis is unreachable or no worker is alive.",
                headers={"Retry-After": "5"},
                extra={"checks": checks},
            )
        return {"status": "ok", "checks": checks}
