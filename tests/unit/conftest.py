"""Fast fixtures: the store over fakeredis, the API app with an in-memory queue."""

from __future__ import annotations

from collections.abc import Iterator

import fakeredis
import pytest
from flask import Flask
from flask.testing import FlaskClient

from newsdesk.settings import Settings
from newsdesk.store import Store
from service.app import create_app
from service.queue import ListQueue


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env({}, key_prefix="unit", stance_scorer="lexicon", rate_limit_storage="memory://")


@pytest.fixture
def fake_redis() -> Iterator[fakeredis.FakeRedis]:
    client = fakeredis.FakeRedis()
    yield client
    client.flushall()


@pytest.fixture
def store(fake_redis: fakeredis.FakeRedis, settings: Settings) -> Store:
    return Store(fake_redis, settings.key_prefix)


@pytest.fixture
def queue() -> ListQueue:
    return ListQueue()


@pytest.fixture
def app(settings: Settings, store: Store, queue: ListQueue) -> Flask:
    return create_app(settings, store=store, queue=queue)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
