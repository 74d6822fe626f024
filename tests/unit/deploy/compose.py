"""docker-compose.yml and deploy/ as the deployment tests read them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
ENV_EXAMPLE = ROOT / "deploy" / "newsdesk.env.example"
NEWSDESK_SERVICES = ("seeds", "api", "worker", "worker-stance")
_REQUIRED = re.compile(r"\$\{(?P<name>[A-Z_]+):\?[^}]*\}")
_DEFAULTED = re.compile(r"\$\{(?P<name>[A-Z_]+):-(?P<default>[^}]*)\}")


def compose() -> dict[str, Any]:
    """The compose file with YAML anchors and merge keys resolved (PyYAML applies `<<`)."""
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's ${NAME:?message} and ${NAME:-default} with the given variables; $$ is a literal $."""
    value = _REQUIRED.sub(lambda m: variables[m["name"]], value)
    value = _DEFAULTED.sub(lambda m: variables.get(m["name"]) or m["default"], value)
    return value.replace("$$", "$")


def seconds(duration: str) -> float:
    """A compose duration such as 150s, 2m or 1m30s."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(float(number) * units[unit] for number, unit in parts)


def env_example() -> dict[str, str]:
    """Every NAME=value line of the example env file, commented out (a default) or not."""
    entries: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^#?\s?(?P<name>[A-Z][A-Z0-9_]+)=(?P<value>.*)$", line)
        if match:
            entries[match["name"]] = match["value"]
    return entries


def dockerfile_stages() -> dict[str, list[str]]:
    """Stage name -> its instructions (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"^FROM\s+\S+\s+AS\s+(\S+)$", line, re.IGNORECASE)
        if match:
            current = stages.setdefault(match[1], [line])
        else:
            current.append(line)
    return stages
