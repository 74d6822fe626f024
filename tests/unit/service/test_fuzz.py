"""Property-based fuzzing of the API against its own OpenAPI document (schemathesis).

Every generated request, valid or not, must get a documented status with a body that matches the
documented schema, and never a 500; a request the schema forbids must be refused. One check is left
out: "schema-valid data is accepted", since some rules cannot be written in JSON Schema (a text must
contain a letter; summary_sentences and summary_ratio exclude each other) and the schema states them
in its descriptions instead.
"""

from __future__ import annotations

import fakeredis
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from newsdesk.settings import Settings
from newsdesk.store import Store
from service.app import create_app
from service.queue import ListQueue

store = Store(fakeredis.FakeRedis(), "fuzz")
app = create_app(Settings.from_env({}, key_prefix="fuzz", rate_limit="off"), store=store, queue=ListQueue())
config = SchemathesisConfig.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {"enabled": False},
            # An invalid body can also be refused for its size (413) or its media type (415).
            "negative_data_rejection": {"expected-statuses": [400, 401, 404, 405, 413, 415, 422, 429]},
        }
    }
)
schema = schemathesis.openapi.from_wsgi("/openapi.json", app, config=config)


@schema.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case) -> None:
    store.worker_heartbeat("fuzz-worker")  # a live worker, so /readyz may answer 200
    case.call_and_validate()
