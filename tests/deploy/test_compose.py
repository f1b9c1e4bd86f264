"""docker-compose.yml against the Compose specification, and the promises it makes.

The schema is the Compose specification's own JSON schema (Apache-2.0), as shipped inside the
``check-jsonschema`` package (``check_jsonschema/builtin_schemas/vendor/compose-spec.json``,
licence beside it in ``vendor/licenses/LICENSE.compose-spec``); it is read from the installed
package, not copied into this repository.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import jsonschema
import pytest
import yaml

from . import dockerfile

COMPOSE_FILE = dockerfile.ROOT / "docker-compose.yml"
PROMETHEUS_FILE = dockerfile.ROOT / "prometheus.yml"
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, ${NAME:+alt}
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")
REQUIRED_SECRETS = {"SECRET_KEY", "POSTGRES_PASSWORD"}


def compose_spec_schema() -> dict[str, Any]:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads((vendor / "compose-spec.json").read_text("utf-8"))
    return schema


def load_compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def _schema_errors(document: object) -> list[str]:
    schema = compose_spec_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def test_matches_the_compose_specification() -> None:
    assert _schema_errors(load_compose()) == []


def test_schema_rejects_a_broken_file() -> None:
    broken = load_compose()
    broken["services"]["api"]["depends_on"]["db"]["condition"] = "service_ready"
    broken["services"]["api"]["healtcheck"] = {}
    errors = _schema_errors(broken)
    assert any("service_ready" in e for e in errors)
    assert any("healtcheck" in e for e in errors)


def _strings(node: object) -> list[str]:
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in (*_strings(key), *_strings(value))]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return [node] if isinstance(node, str) else []


def test_interpolations_are_well_formed_and_secrets_are_required() -> None:
    required = set()
    for value in _strings(load_compose()):
        dollars = {m.start() for m in re.finditer(r"\$(?!\$)", value)}
        matches = list(INTERPOLATION.finditer(value))
        assert dollars == {m.start() for m in matches}, f"Compose would misread {value!r}"
        required |= {m.group(1) for m in matches if m.group(2) in (":?", "?")}
    assert required == REQUIRED_SECRETS


def test_no_secret_is_written_in_the_file() -> None:
    services = load_compose()["services"]
    assert services["api"]["environment"]["SECRET_KEY"].startswith("${SECRET_KEY:?")
    assert "${POSTGRES_PASSWORD:?" in services["api"]["environment"]["DATABASE_URL"]
    assert services["db"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")


def test_start_order_waits_for_health_and_migrations() -> None:
    services = load_compose()["services"]
    api = services["api"]
    assert api["depends_on"] == {
        "migrate": {"condition": "service_completed_successfully"},
        "db": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    assert services["migrate"]["command"] == ["alembic", "upgrade", "head"]
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert services["migrate"]["image"] == api["image"]
    assert services["migrate"]["environment"] == api["environment"]
    for name in ("api", "db", "redis", "prometheus"):
        assert "test" in services[name]["healthcheck"], name
    assert services["db"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")


def test_api_healthcheck_is_the_image_healthcheck() -> None:
    options, argv = dockerfile.healthcheck()
    check = load_compose()["services"]["api"]["healthcheck"]
    assert check["test"] == ["CMD", *argv]
    assert check["interval"] == options["interval"]
    assert check["timeout"] == options["timeout"]
    assert check["start_period"] == options["start-period"]
    assert check["start_interval"] == options["start-interval"]
    assert str(check["retries"]) == options["retries"]


@pytest.mark.parametrize("name", ["api", "migrate"])
def test_app_containers_are_locked_down(name: str) -> None:
    service = load_compose()["services"][name]
    assert service["read_only"] is True
    assert "/tmp" in service["tmpfs"]
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]


def test_images_are_pinned() -> None:
    for name, service in load_compose()["services"].items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: {image}"


def test_prometheus_scrapes_every_api_replica() -> None:
    services = load_compose()["services"]
    mounts = services["prometheus"]["volumes"]
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts
    config = yaml.safe_load(PROMETHEUS_FILE.read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    (discovery,) = job["dns_sd_configs"]
    assert discovery == {"names": ["api"], "type": "A", "port": 8000, "refresh_interval": "30s"}
    assert services["api"]["ports"] == ["${API_PORT:-8000}:8000"]
