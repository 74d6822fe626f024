"""The `newsdesk` command: run the service, its parts, manage seeds, submit articles."""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import click

from newsdesk import logs
from newsdesk.settings import KEY_NAME, KEY_NAME_RULE, Settings, redacted

if TYPE_CHECKING:
    from newsdesk.client import ArticleInput

F = TypeVar("F", bound=Callable[..., Any])
LOCAL_DATA_DIR = ".newsdesk"  # `newsdesk run`'s default data folder
_PORT = click.IntRange(1, 65535)


def _data_dir_option(help_text: str) -> Callable[[F], F]:
    """`newsdesk run`'s data folder, as an option of the commands that need it."""
    return click.option(
        "--data-dir",
        default=LOCAL_DATA_DIR,
        show_default=True,
        type=click.Path(path_type=Path),
        help=help_text,
    )


class ConfigurationError(click.ClickException):
    """A setting the command cannot start with: printed as one line, exit status 2 as for bad usage."""

    exit_code = 2


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ValueError as error:
        raise ConfigurationError(str(error)) from error


@contextlib.contextmanager
def _redis_errors(settings: Settings) -> Iterator[None]:
    """A Redis that cannot be reached (or refuses us) as one line naming it, not a client traceback."""
    import redis  # noqa: PLC0415

    try:
        yield
    except redis.RedisError as error:
        where = urlsplit(settings.redis_url)
        place = f"{where.hostname or 'localhost'}:{where.port or 6379}{where.path}"
        if isinstance(error, redis.ConnectionError | redis.TimeoutError):
            raise click.ClickException(f"cannot reach Redis at {place}: {error}") from error
        raise click.ClickException(f"Redis at {place}: {error}") from error


def _check_rate_limit_storage(settings: Settings) -> None:
    """Build the rate limiter's storage once before gunicorn starts.

    Each gunicorn process builds its own after the fork, and one that cannot be built (a client library
    missing, a bad port) would stop every process with a traceback, then gunicorn with HaltServer.
    """
    if not settings.rate_limited:
        return
    from limits.storage import storage_from_string  # noqa: PLC0415

    name = "NEWSDESK_RATE_LIMIT_STORAGE" if settings.rate_limit_storage else "REDIS_URL"
    uri = settings.rate_limit_storage or settings.redis_url
    try:
        storage_from_string(uri)  # a Redis storage connects on first use, not here
    except Exception as error:  # whatever the storage's constructor raises, the API could not start
        raise ConfigurationError(
            f"{name}={redacted(uri)!r}: the rate limiter cannot use it: {error}"
        ) from error


def _seed_store_settings() -> Settings:
    """Settings for the seed commands: with no REDIS_URL, the embedded Redis of a `newsdesk run` using
    the group's --data-dir if one is running. Says on stderr which Redis it is (a wrong one looks empty)."""
    from newsdesk.local import running_embedded_url  # noqa: PLC0415

    settings = _settings()
    data_dir: Path = click.get_current_context().obj or Path(LOCAL_DATA_DIR)
    embedded = None if os.environ.get("REDIS_URL") else running_embedded_url(data_dir)
    if embedded:
        settings = dataclasses.replace(settings, redis_url=embedded)
    where = urlsplit(settings.redis_url)
    if embedded:
        origin = "newsdesk run's embedded Redis"
    elif os.environ.get("REDIS_URL"):
        origin = "REDIS_URL"
    else:
        origin = f"the default: REDIS_URL is not set and no newsdesk run is using {data_dir}"
    click.echo(f"redis: {where.hostname}:{where.port or 6379}{where.path} ({origin})", err=True)
    return settings


@click.group()
def main() -> None:
    """newsdesk: news-article analysis (summary, stance, near-duplicates) over HTTP."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, envvar="NEWSDESK_API_HOST", show_envvar=True)
@click.option(
    "--port", default=8000, show_default=True, type=_PORT, envvar="NEWSDESK_API_PORT", show_envvar=True
)
@_data_dir_option("Where the embedded Redis keeps its data (ignored when REDIS_URL is set).")
@click.option(
    "--concurrency",
    default=None,
    type=click.IntRange(min=1),
    help="Worker processes [NEWSDESK_WORKER_CONCURRENCY].",
)
def run(host: str, port: int, data_dir: Path, concurrency: int | None) -> None:
    """Everything on this machine: Redis (embedded unless REDIS_URL is set), seeds, a worker and the API."""
    from newsdesk.local import CannotStart, run_local  # noqa: PLC0415 - keeps `newsdesk --help` fast
    from newsdesk.seeds import SeedFileError  # noqa: PLC0415

    settings = _settings()
    if not settings.seeds_dir.exists():
        raise ConfigurationError(f"{settings.seeds_dir} (NEWSDESK_SEEDS_DIR) does not exist")
    logs.configure(settings.log_level, settings.log_format)
    try:
        with _redis_errors(settings):
            status = run_local(
                settings,
                host=host,
                port=port,
                data_dir=data_dir,
                concurrency=concurrency or settings.worker_concurrency,
                explicit_url=bool(os.environ.get("REDIS_URL")),
            )
    except (SeedFileError, CannotStart) as error:
        raise click.ClickException(str(error)) from error
    sys.exit(status)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, envvar="NEWSDESK_API_HOST", show_envvar=True)
@click.option(
    "--port", default=8000, show_default=True, type=_PORT, envvar="NEWSDESK_API_PORT", show_envvar=True
)
@click.option(
    "--workers",
    default=2,
    show_default=True,
    type=click.IntRange(min=1),
    envvar="NEWSDESK_API_PROCESSES",
    show_envvar=True,  # so that a bad value's error names the variable it came from
    help="gunicorn processes",
)
@click.option(
    "--threads",
    default=8,
    show_default=True,
    type=click.IntRange(min=1),
    envvar="NEWSDESK_API_THREADS",
    show_envvar=True,  # so that a bad value's error names the variable it came from
    help="threads per process",
)
def api(host: str, port: int, workers: int, threads: int) -> None:
    """The HTTP API under gunicorn, against REDIS_URL."""
    settings = _settings()  # checked here, before gunicorn's processes would each fail with a traceback
    _check_rate_limit_storage(settings)
    from newsdesk.gunicorn_app import serve  # noqa: PLC0415

    logs.configure(settings.log_level, settings.log_format)
    # In a container (docker-compose.yml) every interface is listened on; where the port is published
    # on the host is what decides who reaches it.
    if warning := open_api_warning(settings, os.environ.get("NEWSDESK_API_BIND") or host):
        logging.getLogger("newsdesk.api").warning(warning)
    serve(settings, host=host, port=port, workers=workers, threads=threads)


def open_api_warning(settings: Settings, host: str) -> str | None:
    """What to warn of when the API is reachable beyond this host (`host`: the address it listens or is
    published on) with no API keys: anybody who reaches it can read and delete every article
    (`newsdesk run` on loopback, the default, is for one user)."""
    if settings.api_keys.strip():
        return None
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host.strip("[]")).is_loopback:
            return None
    if host == "localhost":
        return None
    return (
        f"NEWSDESK_API_KEYS is not set and the API listens on {host}: anybody who reaches it can read and "
        "delete every article (`newsdesk keys new NAME` makes a key)"
    )


@main.command()
@click.option(
    "--concurrency",
    default=None,
    type=click.IntRange(min=1),
    help="Worker processes [NEWSDESK_WORKER_CONCURRENCY].",
)
@click.option(
    "--queues", default=None, help="Comma-separated queues to consume [NEWSDESK_WORKER_QUEUES; default: all]."
)
@click.option("--name", default=None, help="Worker node name (default: newsdesk@<host>-<pid>).")
def worker(concurrency: int | None, queues: str | None, name: str | None) -> None:
    """A Celery worker running the analyses, against REDIS_URL."""
    from workers.celery_app import QueueLayout  # noqa: PLC0415

    settings = _settings()
    layout = QueueLayout.from_settings(settings)
    chosen = [queue.strip() for queue in (queues or settings.worker_queues).split(",") if queue.strip()]
    unknown = sorted(set(chosen) - set(layout.queues))
    if unknown:
        raise click.UsageError(
            f"unknown queues {', '.join(unknown)}; the queues are {', '.join(layout.queues)} "
            "(NEWSDESK_ANALYSIS_QUEUES gives an analysis a queue of its own, e.g. stance=stance)"
        )
    from workers.tasks import app  # noqa: PLC0415 - the analysis libraries, once the arguments are good

    arguments = [
        "--quiet",  # no banner: logs are one line per event
        "worker",
        f"--concurrency={concurrency or settings.worker_concurrency}",
        f"--queues={','.join(chosen or layout.queues)}",
        f"--hostname={name or f'newsdesk@%h-{os.getpid()}'}",
        f"--loglevel={settings.log_level}",
        "--without-gossip",
        "--without-mingle",
    ]
    app.worker_main(argv=arguments)


def _numbers(text: str) -> list[int]:
    try:
        return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise click.BadParameter(f"expected comma-separated whole numbers, got {text!r}") from error


@main.command()
@click.option("--only", default=None, help="Parts to run, comma-separated: analyses,e2e,duplicates,memory.")
@click.option(
    "--seeds", "seed_sizes", default="1000,10000,100000", show_default=True, help="Seed corpus sizes."
)
@click.option("--workers", "worker_counts", default="1,2,4", show_default=True, help="Worker process counts.")
@click.option(
    "--data",
    "data_dir",
    default=None,
    type=click.Path(path_type=Path),
    help="Holds news_corpus/news_corpus.jsonl [../shared/data]; without it: seeds/ and synthetic text.",
)
@click.option(
    "--articles",
    default=None,
    type=click.IntRange(min=1),
    help="Articles per analysis, API and latency measurement [200].",
)
@click.option(
    "--backlog",
    default=None,
    type=click.IntRange(min=1),
    help="Articles queued, then drained by the workers, and run through the bare loop [400].",
)
@click.option("--quick", is_flag=True, help="Tiny sizes: checks that everything runs; figures mean little.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
def bench(
    only: str | None,
    seed_sizes: str,
    worker_counts: str,
    data_dir: Path | None,
    articles: int | None,
    backlog: int | None,
    quick: bool,
    as_json: bool,
) -> None:
    """Measure each analysis, the whole service (HTTP, Redis, workers), the duplicate index and memory."""
    from newsdesk.bench.runner import PARTS, BenchOptions, run_bench  # noqa: PLC0415

    overrides: dict[str, Any] = {}
    if only:
        overrides["parts"] = [part.strip() for part in only.split(",") if part.strip()]
        if unknown := set(overrides["parts"]) - set(PARTS):
            raise click.BadParameter(
                f"unknown {sorted(unknown)}; choose from {','.join(PARTS)}", param_hint="--only"
            )
    source = click.get_current_context().get_parameter_source
    if not quick or source("seed_sizes") != click.core.ParameterSource.DEFAULT:
        overrides["seed_sizes"] = _numbers(seed_sizes)
    if not quick or source("worker_counts") != click.core.ParameterSource.DEFAULT:
        overrides["worker_counts"] = _numbers(worker_counts)
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if articles is not None:
        overrides["articles"] = articles
    if backlog is not None:
        overrides["backlog_articles"] = backlog
    options = BenchOptions.quick(**overrides) if quick else BenchOptions(**overrides)
    report = run_bench(options)
    click.echo(report.to_json() if as_json else report.to_table())


@main.group()
def keys() -> None:
    """API keys: the service stores only their hashes (NEWSDESK_API_KEYS)."""


@keys.command("new")
@click.argument("name")
def keys_new(name: str) -> None:
    """Make a key for a client called NAME; print the key (give it to the client) and its config entry."""
    from service.auth import hash_key, new_key  # noqa: PLC0415

    if not re.fullmatch(KEY_NAME, name):
        # The entry printed must be one NEWSDESK_API_KEYS takes, or the API would refuse to start.
        raise click.BadParameter(f"{name!r} is not {KEY_NAME_RULE}", param_hint="NAME")

    key = new_key()
    click.echo(f"key (give this to the client; it is not stored): {key}")
    click.echo(f"add to NEWSDESK_API_KEYS (comma-separated):   {name}:{hash_key(key)}")


@main.group()
@_data_dir_option(
    "The data folder of a running `newsdesk run`, whose embedded Redis is used when REDIS_URL is unset."
)
@click.pass_context
def seeds(context: click.Context, data_dir: Path) -> None:
    """The seed corpus that submissions are checked against."""
    context.obj = data_dir


@seeds.command("load")
@click.argument("path", required=False, type=click.Path(exists=True, path_type=Path))
def seeds_load(path: Path | None) -> None:
    """Add seeds from a folder of .txt files or a JSONL file of {"id", "title", "text"}.

    PATH defaults to NEWSDESK_SEEDS_DIR.
    """
    import time  # noqa: PLC0415

    from newsdesk.seeds import SeedFileError, add_seeds, read_seeds  # noqa: PLC0415
    from newsdesk.store import Store  # noqa: PLC0415

    started = time.perf_counter()
    try:
        settings = _seed_store_settings()
        source = path or settings.seeds_dir
        if not source.exists():
            raise click.ClickException(f"{source} (NEWSDESK_SEEDS_DIR) does not exist")
        with _redis_errors(settings):
            added, unchanged = add_seeds(Store.from_settings(settings), read_seeds(source))
    except SeedFileError as error:
        raise click.ClickException(str(error)) from error
    click.echo(
        f"{added} seeds added or updated, {unchanged} unchanged, in {time.perf_counter() - started:.1f} s"
    )


@seeds.command("list")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(min=1))
def seeds_list(limit: int) -> None:
    """Print the stored seeds' ids and titles."""
    from newsdesk.store import Store  # noqa: PLC0415

    settings = _seed_store_settings()
    store = Store.from_settings(settings)
    with _redis_errors(settings):
        for seed in store.list_seeds(limit=limit):
            click.echo(f"{seed.id}\t{seed.title or ''}")
        click.echo(f"{store.count_seeds()} seeds in all", err=True)


def _read_articles(files: tuple[Path, ...], title: str | None) -> list[ArticleInput]:
    """Each file as an article to submit; one that is not UTF-8 stops the command before any is sent."""
    articles: list[ArticleInput] = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            # As the API refuses such a body: a replacement character would shift every offset.
            raise click.ClickException(
                f"{file} is not UTF-8 text (invalid byte at position {error.start}); nothing was submitted"
            ) from error
        article: ArticleInput = {"text": text}
        if title:
            article["title"] = title
        articles.append(article)
    return articles


def _check_out_names(files: tuple[Path, ...], out: Path) -> None:
    """--out names each result after its file: two files of one name would write one result over the
    other, so that stops the command before anything is sent."""
    seen: dict[str, Path] = {}
    for file in files:
        if (earlier := seen.setdefault(file.stem, file)) is not file:
            raise click.ClickException(
                f"{earlier} and {file} would both be written to {out / (file.stem + '.json')}; "
                "rename one or submit them separately; nothing was submitted"
            )


@main.command()
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--url", default="http://127.0.0.1:8000", show_default=True, envvar="NEWSDESK_URL", show_envvar=True
)
@click.option("--api-key", default=None, envvar="NEWSDESK_API_KEY", show_envvar=True)
@click.option("--title", default=None)
@click.option("--wait/--no-wait", default=False, help="Wait for the results (long-polling) and print them.")
@click.option("--timeout", default=600.0, show_default=True, type=float, help="Seconds to wait in all.")
@click.option(
    "--out",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one JSON file per article (named after its file) here instead of printing.",
)
@click.option(
    "--concurrency",
    default=4,
    show_default=True,
    type=click.IntRange(min=1),
    help="Batches in flight at once.",
)
@click.option(
    "--batch-size",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="Articles per batch request.",
)
def submit(
    files: tuple[Path, ...],
    url: str,
    api_key: str | None,
    title: str | None,
    wait: bool,
    timeout: float,
    out: Path | None,
    concurrency: int,
    batch_size: int,
) -> None:
    """Submit article files (plain text or HTML) to a running service; print ids, or results with --wait.

    One file: its result as a JSON object. Several: one JSON line per file, in order, with a progress
    bar on stderr. A file the service rejects is reported on stderr and makes the exit status 1.
    """
    import httpx  # noqa: PLC0415

    from newsdesk.client import NewsdeskClient, NewsdeskError  # noqa: PLC0415

    if out is not None:
        _check_out_names(files, out)
    articles = _read_articles(files, title)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    with (
        NewsdeskClient(url, api_key=api_key, timeout=30) as client,
        click.progressbar(
            length=len(files), label="articles", file=sys.stderr, hidden=len(files) == 1
        ) as progress,
    ):
        try:
            results = client.submit_many(
                articles,
                batch_size=max(1, batch_size),
                concurrency=concurrency,
                wait=wait,
                timeout=timeout,
                on_result=lambda _index, _entry: progress.update(1),
            )
        except (NewsdeskError, TimeoutError) as error:
            raise click.ClickException(str(error)) from error
        except httpx.HTTPError as error:  # refused, unreachable, timed out
            raise click.ClickException(f"cannot reach the service at {url}: {error}") from error
    failures = 0
    for file, entry in zip(files, results, strict=True):
        if isinstance(entry, NewsdeskError):
            failures += 1
            click.echo(f"{file}: {json.dumps(entry.problem, ensure_ascii=False)}", err=True)
            continue
        output = dict(entry.raw) if wait else {"id": entry.id, "status": entry.status}
        if out is not None:
            (out / f"{file.stem}.json").write_text(json.dumps(output, indent=2, ensure_ascii=False) + "\n")
        elif len(files) == 1:
            click.echo(json.dumps(output, indent=2, ensure_ascii=False))
        else:
            click.echo(json.dumps({"file": str(file), **output}, ensure_ascii=False))
    if out is not None:
        click.echo(f"{len(files) - failures} results written to {out}", err=True)
    if failures:
        sys.exit(1)


@main.command("eval")
@click.option(
    "--data",
    "data_dir",
    default=Path("../shared/data"),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder laid out as shared/data: newsmtsc/, summaries/, news_corpus/.",
)
@click.option("--only", default="stance,summary,duplicates", show_default=True, help="Parts to run.")
@click.option(
    "--per-kind",
    default=150,
    show_default=True,
    type=click.IntRange(min=1),
    help="Duplicate queries per case type.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
def evaluate(data_dir: Path, only: str, per_kind: int, as_json: bool) -> None:
    """Measure every analysis on public evaluation data, as the workers run them."""
    from newsdesk.evaluation.report import PARTS, format_table, run_evaluation  # noqa: PLC0415
    from newsdesk.jsonl import RecordError  # noqa: PLC0415
    from workers.pipeline import load_scorer  # noqa: PLC0415

    parts = [part.strip() for part in only.split(",") if part.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise click.BadParameter(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    if not data_dir.is_dir():
        click.echo(
            f"{data_dir} not found: every part is skipped; only the timing runs (on the seeds)", err=True
        )
    settings = _settings()
    try:
        result = run_evaluation(
            data_dir,
            load_scorer(settings.stance_scorer),
            parts=parts,
            per_kind=per_kind,
            settings=settings,
            progress=lambda step: click.echo(f"... {step}", err=True),
        )
    except RecordError as bad:
        raise click.ClickException(str(bad)) from bad
    except ModuleNotFoundError as missing:
        if missing.name != "rouge_score":
            raise
        raise click.ClickException("ROUGE needs rouge-score: pip install -e '.[dev]'") from missing
    click.echo(json.dumps(result, indent=2) if as_json else format_table(result))
