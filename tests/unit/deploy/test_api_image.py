"""The API image has no analysis extra (onnxruntime, tokenizers, VADER) and no stance model files.

A fresh interpreter with those imports made impossible builds the app and serves every kind of
request the API answers, seeds included (their sketches use numpy and blingfire, which the image has).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.unit.deploy.compose import ROOT

BLOCKED = ("onnxruntime", "tokenizers", "vaderSentiment", "workers.analysis.stance_model", "workers.pipeline")

SCRIPT = textwrap.dedent(
    """
    import importlib.abc, sys

    BLOCKED = {blocked!r}

    class Missing(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                raise ModuleNotFoundError(f"{{name}} is not in the API image")
            return None

    sys.meta_path.insert(0, Missing())

    import fakeredis
    from newsdesk.settings import Settings
    from newsdesk.store import Store
    from service.app import create_app
    from service.queue import ListQueue

    settings = Settings.from_env({{}}, rate_limit_storage="memory://")
    store = Store(fakeredis.FakeRedis(), "image")
    client = create_app(settings, store=store, queue=ListQueue()).test_client()
    text = "The United Nations welcomed the agreement. Russia said it would study the text carefully."
    statuses = [
        client.post("/v1/articles", json={{"text": text}}).status_code,
        client.post("/v1/seeds", json={{"id": "s1", "text": text}}).status_code,
        client.get("/v1/seeds/s1").status_code,
        client.get("/metrics").status_code,
        client.get("/openapi.json").status_code,
        client.get("/healthz").status_code,
    ]
    assert statuses == [202, 201, 200, 200, 200, 200], statuses
    loaded = sorted(m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in BLOCKED))
    assert not loaded, loaded
    print("ok")
    """
)


def test_the_api_runs_without_the_analysis_extra() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(blocked=BLOCKED)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_the_blocker_works() -> None:
    """The check above would notice an import of the stance model."""
    script = SCRIPT.format(blocked=BLOCKED).replace(
        "import fakeredis", "import workers.pipeline\nimport fakeredis"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode != 0
    assert "workers.pipeline is not in the API image" in result.stderr
