"""Every variable the deployment files give the service is a setting it reads, or a documented
variable of the tools around it, and every value they give is one the settings accept."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from lightweight_charts_pro_backend.config import Settings

from . import dockerfile
from .test_compose import INTERPOLATION, load_compose

DOCS = dockerfile.ROOT / "docs" / "deployment.md"
K8S_DIR = dockerfile.ROOT / "deploy" / "k8s"

# Read by something other than Settings; each is explained in docs/deployment.md.
NON_SETTINGS = {
    "PROMETHEUS_MULTIPROC_DIR": "prometheus_client's shared directory for the workers' metrics",
    "WEB_CONCURRENCY": "worker processes, read by uvicorn --workers and gunicorn.conf.py",
    "FORWARDED_ALLOW_IPS": "proxies whose X-Forwarded-For uvicorn and gunicorn believe",
    "PYTHONDONTWRITEBYTECODE": "Python: no .pyc files on a read-only filesystem",
    "PYTHONUNBUFFERED": "Python: logs leave the container at once",
}

# Settings the manifests may name before the service reads them; the test below fails once a
# listed name is a setting. Empty: every variable the files set is a setting today.
PENDING_SETTINGS: set[str] = set()


def setting_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


def _interpolate(value: str) -> str:
    """Compose's substitution with every variable unset: defaults, and a stand-in for secrets."""

    def replace(match: re.Match[str]) -> str:
        operator, word = match.group(2), match.group(3) or ""
        if operator in (":-", "-"):
            return word
        return "stand-in-secret-0123456789abcdef" if operator in (":?", "?") else ""

    return INTERPOLATION.sub(replace, value)


def _k8s_env() -> dict[str, dict[str, dict[str, Any]]]:
    found = {}
    for name in ("deployment.yaml", "migrate-job.yaml"):
        for doc in yaml.safe_load_all((K8S_DIR / name).read_text()):
            for container in doc["spec"]["template"]["spec"]["containers"]:
                key = f"{name}:{container['name']}"
                found[key] = {item["name"]: item for item in container.get("env", [])}
    return found


def sources() -> dict[str, dict[str, str | None]]:
    """Variable name -> literal value (None when it comes from a Secret), per file and container."""
    result: dict[str, dict[str, str | None]] = {"Dockerfile": dict(dockerfile.runtime_stage().env)}
    for name in ("api", "migrate"):
        environment = load_compose()["services"][name]["environment"]
        result[f"docker-compose.yml:{name}"] = {
            key: _interpolate(str(value)) for key, value in environment.items()
        }
    for key, env in _k8s_env().items():
        result[key] = {name: item.get("value") for name, item in env.items()}
    return result


@pytest.mark.parametrize("source", sorted(sources()))
def test_every_variable_is_a_setting_or_documented(source: str) -> None:
    known = setting_names() | set(NON_SETTINGS) | PENDING_SETTINGS
    unknown = set(sources()[source]) - known
    assert not unknown, f"{source} sets {sorted(unknown)}, which the service does not read"


@pytest.mark.parametrize("source", sorted(sources()))
def test_every_value_is_accepted_by_the_settings(source: str) -> None:
    names = setting_names()
    values = {
        name.lower(): value
        for name, value in sources()[source].items()
        if value is not None and name in names
    }
    Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_settings_still_pending_are_not_settings_yet() -> None:
    landed = PENDING_SETTINGS & setting_names()
    assert not landed, f"{sorted(landed)} are settings now: remove them from PENDING_SETTINGS"


def test_non_settings_and_compose_variables_are_documented() -> None:
    docs = DOCS.read_text()
    compose_text = (dockerfile.ROOT / "docker-compose.yml").read_text()
    compose_variables = {match.group(1) for match in INTERPOLATION.finditer(compose_text)}
    for name in sorted(set(NON_SETTINGS) | compose_variables):
        assert f"`{name}`" in docs, f"docs/deployment.md does not explain {name}"
