"""Deployment files: docker-compose.yml is valid and agrees with the Dockerfile.

`docker-compose config -q` runs when docker-compose is installed (Debian: apt-get install
docker-compose; CI installs it, and there a missing docker-compose fails the test). The
rest reads the files: targets, extras, health checks, the Ray wiring.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "docker-compose.yml"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _stages() -> dict[str, list[str]]:
    """Dockerfile stage name -> its instructions (continuation lines joined)."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    stages: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if match:
            current = stages.setdefault(match.group(2) or f"_{len(stages)}", [])
        if current is not None:
            current.append(line)
    return stages


def _extras(stage: list[str]) -> set[str]:
    found: set[str] = set()
    for line in stage:
        for group in re.findall(r"/opt/phymem\[([a-z0-9_,-]+)\]", line):
            found.update(group.split(","))
    return found


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def _command(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else str(command)


def test_docker_compose_config_is_valid() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        message = "docker-compose is not installed (apt-get install docker-compose)"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    env = {**os.environ, "PHYMEM_API_KEY": "k"}
    for extra in ([], ["--profile", "gpu"]):
        done = subprocess.run(
            [binary, "-f", str(COMPOSE), *extra, "config", "-q"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr


def test_every_build_target_is_a_dockerfile_stage() -> None:
    stages = _stages()
    services = _compose()["services"]
    targets = {
        name: service["build"]["target"] for name, service in services.items() if "build" in service
    }
    assert set(targets.values()) == {"api", "worker", "worker-gpu"}
    for name, target in targets.items():
        assert target in stages, f"service {name}: no stage {target!r} in the Dockerfile"
        assert services[name]["build"].get("context", ".") == "."


def test_images_install_the_right_extras() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    base = " ".join(pyproject["project"]["dependencies"]).lower()
    assert "tensorflow" not in base and "ray" not in base.replace("array", "")
    stages = _stages()
    assert _extras(stages["api"]) == {"postgres"}  # no TensorFlow, no Ray
    assert _extras(stages["worker"]) == {"postgres", "worker"}
    assert _extras(stages["worker-gpu"]) == {"postgres", "gpu"}
    for stage in ("api", "worker", "worker-gpu"):
        assert _extras(stages[stage]) <= set(extras), stage
    assert any("tensorflow" in dep and "and-cuda" in dep for dep in extras["gpu"])
    assert any(dep.startswith("ray") for dep in extras["worker"])
    # The GPU image starts from a CUDA base.
    text = DOCKERFILE.read_text()
    cuda = re.search(r"ARG CUDA_IMAGE=(\S+)", text)
    assert cuda and cuda.group(1).startswith("nvidia/cuda:")
    assert stages["worker-gpu"][0].split()[1] == "${CUDA_IMAGE}"


def test_dockerfile_copies_what_exists() -> None:
    for stage in _stages().values():
        for line in stage:
            if line.upper().startswith("COPY") and "--from" not in line:
                *sources, _ = line.split()[1:]
                for source in sources:
                    assert (REPO / source).exists(), f"COPY {source}: not in the repository"
    # Every package the wheel needs is copied.
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = DOCKERFILE.read_text()
    for package in packages:
        assert f"COPY {package.rstrip('*')} " in copied, package


def test_api_migrates_on_start_and_everything_has_health_checks() -> None:
    services = _compose()["services"]
    api_cmd = next(line for line in _stages()["api"] if line.startswith("CMD"))
    assert "phymem db upgrade" in api_cmd and "phymem serve" in api_cmd
    assert "--host 0.0.0.0" in api_cmd and "api" in services
    for name in ("postgres", "api", "worker", "ray-node"):
        assert "healthcheck" in services[name], name
    assert services["api"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    # The worker checks the schema on start: it waits for the API's migration.
    assert services["worker"]["depends_on"]["api"]["condition"] == "service_healthy"
    url = services["api"]["environment"]["PHYMEM_DATABASE_URL"]
    assert url.startswith("postgresql+psycopg://") and "@postgres:5432/" in url
    assert services["worker"]["environment"]["PHYMEM_DATABASE_URL"] == url


def test_ray_wiring() -> None:
    from app.worker.resources import PREFIX

    services = _compose()["services"]
    head = _command(services["worker"])
    assert "ray start --head --port=6379" in head and "exec phymem worker" in head
    assert services["worker"]["environment"]["PHYMEM_RAY_ADDRESS"] == "auto"
    for name in ("ray-node", "ray-gpu-node"):
        command = _command(services[name])
        assert "--address=worker:6379" in command and "--block" in command, name
        assert services[name]["depends_on"]["worker"]["condition"] == "service_healthy"
    for name in ("worker", "ray-node", "ray-gpu-node"):
        assert f'"{PREFIX}' in _command(services[name]), name  # advertises a device class
        env = services[name]["environment"]
        assert env["RAY_AUTH_MODE"] == "token", name
        assert env["RAY_AUTH_TOKEN"] == services["worker"]["environment"]["RAY_AUTH_TOKEN"]
    assert "--num-gpus" in _command(services["ray-gpu-node"])
    assert services["ray-gpu-node"]["profiles"] == ["gpu"]


def test_the_commands_the_images_run_exist() -> None:
    from typer.testing import CliRunner

    from app.cli import app

    runner = CliRunner()
    for args in (["serve", "--help"], ["db", "upgrade", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
    import typer

    from app.cli_worker import register

    worker_cli = typer.Typer()
    register(worker_cli)
    result = runner.invoke(worker_cli, ["worker", "--help"])
    assert result.exit_code == 0 and "--ray-address" in result.output
