"""The CLI's answers where the service or its Redis is not where the user thinks."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from newsdesk.cli import main
from newsdesk.embedded import free_port
from newsdesk.local import URL_FILE, running_embedded_url


def test_submit_to_no_service_says_so_without_a_traceback(tmp_path: Path) -> None:
    article = tmp_path / "a.txt"
    article.write_text("Words of an article. And a second sentence.", encoding="utf-8")
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = CliRunner().invoke(main, ["submit", str(article), "--url", url])
    assert result.exit_code == 1
    assert f"cannot reach the service at {url}" in result.output
    assert "Traceback" not in result.output


def test_seed_commands_name_the_redis_they_use(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("NEWSDESK_KEY_PREFIX", "unit-cli")
    result = CliRunner().invoke(main, ["seeds", "list", "--limit", "1"])
    assert result.exit_code == 0, result.output
    assert "(REDIS_URL)" in result.output  # stderr is mixed in: a wrong Redis would look empty, silently


def test_a_stale_url_file_of_a_killed_run_is_ignored(tmp_path: Path) -> None:
    (tmp_path / URL_FILE).write_text(f"redis://127.0.0.1:{free_port()}/0\n", encoding="utf-8")
    assert running_embedded_url(tmp_path) is None
    assert running_embedded_url(tmp_path / "absent") is None
