"""docker-compose.yml checked service by service: commands, environment, volumes, health checks, images.

No container engine runs here, so what can be read is checked: every command parses as the CLI it
names, every file a service or image uses exists, and the settings wiring holds together.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from dataclasses import fields

import click
import pytest
import yaml
from click.testing import CliRunner

from newsdesk.cli import main
from newsdesk.settings import Settings
from tests.unit.deploy.compose import (
    COMPOSE_FILE,
    NEWSDESK_SERVICES,
    ROOT,
    compose,
    dockerfile_stages,
    interpolate,
    seconds,
)
from workers.celery_app import QueueLayout

SERVICES = compose()["services"]
PASSWORD = {"REDIS_PASSWORD": "s3cret"}


def test_the_services() -> None:
    assert set(SERVICES) == {"redis", "seeds", "api", "worker", "worker-stance", "prometheus"}


def test_redis_persists_to_a_named_volume_refuses_eviction_and_needs_a_password() -> None:
    redis = SERVICES["redis"]
    assert "ports" not in redis
    assert "network_mode" not in redis
    assert "redis-data:/data" in redis["volumes"]
    assert "redis-data" in compose()["volumes"]
    mounted = {v.split(":")[1]: ROOT / v.split(":")[0] for v in redis["volumes"] if v.startswith("./")}
    config_path = mounted["/usr/local/etc/redis/redis.conf"]
    config = dict(
        line.split(" ", 1) for line in config_path.read_text().splitlines() if line and line[0] != "#"
    )
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "everysec"
    assert config["maxmemory-policy"] == "noeviction"
    assert "dir" not in config  # the working directory: the image's /data, where the volume is
    assert "working_dir" not in redis
    assert "requirepass" not in config  # the password comes from the environment

    command = " ".join(redis["command"])
    assert "redis-server /usr/local/etc/redis/redis.conf --include /tmp/requirepass.conf" in command
    assert "requirepass" in command
    assert "$$REDIS_PASSWORD" in command
    assert redis["environment"]["REDIS_PASSWORD"].startswith("${REDIS_PASSWORD:?")  # required, no default
    # noeviction means nothing without a limit: Redis would grow until the host killed it
    assert '--maxmemory "$$REDIS_MAXMEMORY"' in command
    assert redis["environment"]["REDIS_MAXMEMORY"] == "${REDIS_MAXMEMORY:-1gb}"
    assert redis["user"] == "redis"
    check = redis["healthcheck"]["test"]
    assert check[0] == "CMD-SHELL"
    assert 'REDISCLI_AUTH="$$REDIS_PASSWORD" redis-cli ping | grep -q PONG' in check[1]


def test_newsdesk_services_share_the_common_anchor() -> None:
    common = compose()["x-newsdesk-common"]
    for name in NEWSDESK_SERVICES:
        service = SERVICES[name]
        for key in ("env_file", "init", "security_opt", "logging"):
            assert service[key] == common[key], (name, key)
        assert service["depends_on"]["redis"] == {"condition": "service_healthy"}, name
        url = interpolate(service["environment"]["REDIS_URL"], PASSWORD)
        assert url == "redis://:s3cret@redis:6379/0", name
        assert "container_name" not in service, name
    assert common["env_file"] == [{"path": ".env", "required": False}]
    assert all(SERVICES[n]["restart"] == "unless-stopped" for n in ("api", "worker", "worker-stance"))
    assert SERVICES["seeds"]["restart"] == "on-failure"  # a one-shot job


def test_images_are_built_from_the_dockerfile_targets() -> None:
    stages = dockerfile_stages()
    targets = {}
    for name in NEWSDESK_SERVICES:
        build = SERVICES[name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]) == ROOT / "deploy" / "Dockerfile"
        assert build["target"] in stages
        targets[name] = (build["target"], SERVICES[name]["image"])
    assert targets["api"] == targets["seeds"] == ("api", "newsdesk-api:${NEWSDESK_VERSION:-latest}")
    assert (
        targets["worker"]
        == targets["worker-stance"]
        == ("worker", "newsdesk-worker:${NEWSDESK_VERSION:-latest}")
    )


@pytest.mark.parametrize("name", NEWSDESK_SERVICES)
def test_each_command_is_the_newsdesk_cli_and_parses(name: str) -> None:
    command = SERVICES[name]["command"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert command[0] in scripts  # the console script the images install
    assert scripts[command[0]] == "newsdesk.cli:main"
    result = CliRunner().invoke(main, [*command[1:], "--help"])
    assert result.exit_code == 0, result.output


def test_api_listens_on_the_published_port_and_checks_readiness() -> None:
    api = SERVICES["api"]
    environment = api["environment"]
    assert environment["NEWSDESK_API_HOST"] == "0.0.0.0"
    port = environment["NEWSDESK_API_PORT"]
    assert api["ports"] == [f"${{NEWSDESK_API_BIND:-127.0.0.1}}:{port}:{port}"]  # this host unless told
    assert environment["NEWSDESK_API_BIND"] == "${NEWSDESK_API_BIND:-127.0.0.1}"  # judged by the warning
    check = api["healthcheck"]["test"]
    assert check[:3] == ["CMD", "python", "-c"]
    assert "/readyz" in check[3]
    assert "NEWSDESK_API_PORT" in check[3]
    compile(check[3], "healthcheck", "exec")
    assert api["depends_on"]["seeds"] == {"condition": "service_completed_successfully"}
    assert seconds(api["stop_grace_period"]) > 20  # gunicorn's graceful timeout


def test_workers_scale_and_shut_down_warm() -> None:
    time_limit = Settings().task_time_limit
    for name in ("worker", "worker-stance"):
        worker = SERVICES[name]
        assert "ports" not in worker
        assert "container_name" not in worker
        assert "--concurrency" not in worker["command"]  # NEWSDESK_WORKER_CONCURRENCY decides
        assert seconds(worker["stop_grace_period"]) > time_limit
        check = worker["healthcheck"]["test"]
        assert check[:3] == ["CMD", "python", "-c"]
        compile(check[3], "healthcheck", "exec")
        # newsdesk/health.py's check, which passes a worker while a full Redis refuses its heartbeat
        assert "sys.exit(worker_container_check())" in check[3]
    assert "NEWSDESK_WORKER_QUEUES" not in SERVICES["worker"]["environment"]  # every queue
    dedicated = SERVICES["worker-stance"]
    assert dedicated["environment"]["NEWSDESK_WORKER_QUEUES"] == "stance"
    # ...a queue that exists once stance travels on its own (NEWSDESK_ANALYSIS_QUEUES, set in .env)
    split = QueueLayout.from_settings(Settings(analysis_queues="stance=stance"))
    assert set(dedicated["environment"]["NEWSDESK_WORKER_QUEUES"].split(",")) <= set(split.queues)
    assert dedicated["deploy"]["replicas"] == 0  # started with --scale worker-stance=N


def test_worker_refuses_an_unknown_queue() -> None:
    result = CliRunner().invoke(
        main,
        ["worker"],
        env={"NEWSDESK_WORKER_QUEUES": "stance,nope", "NEWSDESK_ANALYSIS_QUEUES": "stance=stance"},
    )
    assert result.exit_code == 2
    assert "unknown queues nope;" in result.output


def test_a_stance_worker_needs_stance_on_its_own_queue() -> None:
    result = CliRunner().invoke(main, ["worker", "--queues", "stance"], env={"NEWSDESK_ANALYSIS_QUEUES": ""})
    assert result.exit_code == 2
    assert "unknown queues stance;" in result.output
    assert "NEWSDESK_ANALYSIS_QUEUES" in result.output


def test_monitoring_profile_scrapes_the_api() -> None:
    prometheus = SERVICES["prometheus"]
    assert prometheus["profiles"] == ["monitoring"]
    assert all(port.startswith("127.0.0.1:") for port in prometheus["ports"])
    mounted = {v.split(":")[1]: ROOT / v.split(":")[0] for v in prometheus["volumes"] if v.startswith("./")}
    config = yaml.safe_load(mounted["/etc/prometheus/prometheus.yml"].read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"] == [
        {"targets": [f"api:{SERVICES['api']['environment']['NEWSDESK_API_PORT']}"]}
    ]
    for name in set(SERVICES) - {"prometheus"}:
        assert "profiles" not in SERVICES[name], name


def test_dockerfile_stages_copy_what_exists_and_run_as_a_user() -> None:
    stages = dockerfile_stages()
    assert {"build", "runtime", "api", "worker"} <= set(stages)
    for instructions in stages.values():
        for line in instructions:
            if line.startswith("COPY") and "--from" not in line:
                *sources, _ = line.split()[1:]
                for source in sources:
                    assert (ROOT / source).exists(), line
    useradd = next(line for line in stages["runtime"] if "useradd" in line)
    user = re.search(r"useradd .*?(\S+)$", useradd)
    assert user is not None
    for target in ("api", "worker"):
        (user_line,) = [line for line in stages[target] if line.startswith("USER ")]
        assert user_line.split()[1] == user[1] != "root"
        assert any(line.startswith("CMD") and '"newsdesk"' in line for line in stages[target])
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    worker_install = next(line for line in stages["worker"] if "pip install" in line)
    api_install = next(line for line in stages["api"] if "pip install" in line)
    assert "[analysis]" in worker_install
    assert "analysis" in extras
    assert "[" not in api_install  # the base dependencies only
    assert "newsdesk[analysis,local]" in extras["dev"]  # `make install` gets everything the tests need


def test_docker_build_context_keeps_what_the_dockerfile_copies() -> None:
    ignore = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = {
        source.rstrip("/")
        for instructions in dockerfile_stages().values()
        for line in instructions
        if line.startswith("COPY") and "--from" not in line
        for source in line.split()[1:-1]
    }
    assert "*" in ignore
    assert copied <= kept


def test_every_setting_and_deployment_variable_is_in_the_example_env_file() -> None:
    from tests.unit.deploy.compose import env_example  # noqa: PLC0415

    documented = env_example()
    settings_vars = {spec.metadata["env"]: spec for spec in fields(Settings)}
    cli_vars = {
        param.envvar: param
        for name in NEWSDESK_SERVICES
        for param in _cli_command(SERVICES[name]["command"][1:]).params
        if isinstance(param.envvar, str)
    }
    compose_vars = set(re.findall(r"\$\{([A-Z_]+)", COMPOSE_FILE.read_text()))
    assert set(settings_vars) | set(cli_vars) | compose_vars <= set(documented)
    assert documented["REDIS_PASSWORD"] == ""  # to be filled in
    defaults = Settings()
    for name, spec in settings_vars.items():
        if name in {"NEWSDESK_SEEDS_DIR"}:
            continue  # the default is a path inside the checkout
        value, default = documented[name], getattr(defaults, spec.name)
        if value:
            assert getattr(Settings.from_env({name: value}), spec.name) == default, name
        else:  # documented as empty: the default must be empty too
            assert not default, name
    for name, param in cli_vars.items():
        assert documented[name] == str(param.default), name


def _cli_command(arguments: list[str]) -> click.Command:
    """The click command that `newsdesk ARGUMENTS...` runs."""
    command: click.Command = main
    for argument in arguments:
        if not isinstance(command, click.Group) or argument not in command.commands:
            break
        command = command.commands[argument]
    return command


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode != 0,
    reason="the docker compose plugin is not installed",
)
def test_docker_compose_accepts_the_file() -> None:
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), "--profile", "monitoring", "config", "--quiet"],
        env={"REDIS_PASSWORD": "s3cret", "PATH": "/usr/bin:/bin:/usr/local/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
