"""Seeds: the stored corpus that submitted articles are checked against for near-duplicates."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask.views import MethodView

from newsdesk.seeds import MAX_SEED_ID_CHARS, add_seeds
from newsdesk.store import Seed
from service.app_context import services
from service.body import Blueprint
from service.problems import Problem
from service.schemas import SeedListQuerySchema, SeedPageSchema, SeedSchema, SeedSubmissionSchema

blp = Blueprint("seeds", __name__, url_prefix="/v1/seeds", description="The seed corpus for duplicate checks")


@blp.route("")
class Seeds(MethodView):
    @blp.arguments(SeedListQuerySchema(), location="query", unknown=ma.RAISE)
    @blp.response(200, SeedPageSchema)
    @blp.problem(401, "API keys are configured and the request has no valid one")
    def get(self, query: dict[str, Any]) -> Any:
        """List seeds in id order, a page at a time (pass `next` back as `after`)."""
        store = services().store
        limit = query["limit"]
        items = store.list_seeds(after=query.get("after"), limit=limit)
        return {
            "items": [
                {"id": s.id, "title": s.title, "source": s.source, "added_at": s.added_at} for s in items
            ],
            "count": store.count_seeds(),
            "next": items[-1].id if len(items) == limit else None,
        }

    @blp.arguments(SeedSubmissionSchema())
    @blp.response(
        201, SeedSchema, headers={"Location": {"description": "The seed's URL", "schema": {"type": "string"}}}
    )
    @blp.problem(400, "Malformed JSON")
    @blp.problem(401, "API keys are configured and the request has no valid one")
    @blp.problem(413, "Body over the size limit")
    @blp.problem(415, "Body is not JSON")
    @blp.problem(503, "Storage unavailable")
    def post(self, submission: dict[str, Any]) -> Any:
        """Add an article to the seed corpus (or replace the seed with the same id).

        Submissions analysed from now on are checked against it.
        """
        current = services()
        seed = Seed(
            id=submission.get("id") or uuid.uuid4().hex,
            text=submission["text"],
            title=submission.get("title"),
            source=submission.get("source"),
        )
        add_seeds(current.store, [seed])
        stored = current.store.get_seed(seed.id)
        return _seed_view(stored or seed), {"Location": f"/v1/seeds/{seed.id}"}


@blp.route("/<string:seed_id>")
class SeedResource(MethodView):
    @blp.response(200, SeedSchema)
    @blp.problem(401, "API keys are configured and the request has no valid one")
    @blp.problem(404, "No such seed")
    def get(self, seed_id: str) -> Any:
        """One seed with its text."""
        seed = services().store.get_seed(seed_id) if len(seed_id) <= MAX_SEED_ID_CHARS else None
        if seed is None:
            raise Problem(404, "seed-not-found", "Seed not found", f"No seed has the id {seed_id!r}.")
        return _seed_view(seed)


def _seed_view(seed: Seed) -> dict[str, Any]:
    return {
        "id": seed.id,
        "title": seed.title,
        "source": seed.source,
        "added_at": seed.added_at,
        "text": seed.text,
    }
