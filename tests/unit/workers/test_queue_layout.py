"""Which queue each analysis travels on: one message per queue per article."""

from __future__ import annotations

import pytest

from newsdesk.settings import Settings
from workers.celery_app import QueueLayout, create_celery


def test_by_default_every_analysis_travels_in_one_message() -> None:
    layout = QueueLayout.from_settings(Settings())
    assert layout.queues == ("analyses", "webhooks")
    assert layout.groups(["stance", "summary", "duplicates"]) == {
        "analyses": ["summary", "duplicates", "stance"]  # the cheap ones first
    }
    assert layout.groups(["stance"]) == {"analyses": ["stance"]}


def test_an_analysis_can_have_a_queue_of_its_own() -> None:
    layout = QueueLayout.from_settings(Settings(analysis_queues=" stance = stance "))
    assert layout.queues == ("analyses", "stance", "webhooks")
    assert layout.groups(["summary", "stance", "duplicates"]) == {
        "analyses": ["summary", "duplicates"],
        "stance": ["stance"],
    }
    assert layout.groups(["summary"]) == {"analyses": ["summary"]}


@pytest.mark.parametrize(
    "value", ["stance", "sentiment=stance", "stance=Stance Queue", "stance=webhooks", "summary="]
)
def test_a_bad_layout_stops_the_service_at_start(value: str) -> None:
    with pytest.raises(ValueError, match="NEWSDESK_ANALYSIS_QUEUES"):
        create_celery(Settings(analysis_queues=value))
