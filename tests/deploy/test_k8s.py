"""deploy/k8s against the Kubernetes API schemas, and the promises the manifests make.

The schemas are those shipped by the ``kubernetes-validate`` package (JSON schemas generated from
the Kubernetes OpenAPI definitions, one set per minor version), read offline; strict mode rejects
unknown fields, so a misspelt key fails as it would with ``kubectl apply --validate=strict``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions

from . import dockerfile

K8S_DIR = dockerfile.ROOT / "deploy" / "k8s"
MANIFESTS = sorted(p for p in K8S_DIR.glob("*.yaml") if p.name != "kustomization.yaml")
# The oldest and the newest Kubernetes versions the installed schemas cover.
VERSIONS = sorted({all_versions()[0], all_versions()[-1]})


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _objects() -> dict[str, dict[str, Any]]:
    found = {}
    for path in MANIFESTS:
        for doc in _documents(path):
            found[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return found


def _container(pod_owner: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod_owner["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container["env"]}


def _deployment() -> dict[str, Any]:
    return _objects()["Deployment/charts-backend"]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_matches_the_kubernetes_schema(path: Path, version: str) -> None:
    documents = _documents(path)
    assert documents
    for doc in documents:
        kubernetes_validate.validate(doc, version, strict=True)


def test_schema_rejects_a_misspelt_field() -> None:
    broken = _deployment()
    _container(broken)["securityContext"]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFileSystem"):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def test_every_kind_is_there() -> None:
    kinds = {key.split("/")[0] for key in _objects()}
    assert kinds >= {"Deployment", "Service", "Secret", "Job", "HorizontalPodAutoscaler"}


def test_deployment_probes_and_resources_follow_the_guide() -> None:
    container = _container(_deployment())
    assert container["image"] == "charts-backend:0.1.0"
    (port,) = container["ports"]
    assert port["containerPort"] == 8000
    liveness, readiness = container["livenessProbe"], container["readinessProbe"]
    assert liveness["httpGet"]["path"] == "/health"
    assert (liveness["initialDelaySeconds"], liveness["periodSeconds"]) == (10, 30)
    assert readiness["httpGet"]["path"] == "/health/ready"
    assert (readiness["initialDelaySeconds"], readiness["periodSeconds"]) == (5, 10)
    assert liveness["httpGet"]["port"] in (port["containerPort"], port["name"])
    assert container["resources"] == {
        "requests": {"memory": "256Mi", "cpu": "250m"},
        "limits": {"memory": "512Mi", "cpu": "500m"},
    }
    env = _env(container)
    for name, value in {"ENVIRONMENT": "production", "ENABLE_AUTH": "true"}.items():
        assert env[name]["value"] == value
    assert env["ENABLE_PERSISTENCE"]["value"] == "true"


@pytest.mark.parametrize("name", ["Deployment/charts-backend", "Job/charts-backend-migrate"])
def test_secrets_come_by_reference(name: str) -> None:
    owner = _objects()[name]
    secret = _objects()["Secret/charts-secrets"]
    env = _env(_container(owner))
    for variable in ("DATABASE_URL", "SECRET_KEY", "REDIS_URL"):
        if variable not in env:
            continue
        reference = env[variable]["valueFrom"]["secretKeyRef"]
        assert reference["name"] == secret["metadata"]["name"]
        assert reference["key"] in secret["stringData"], f"{variable}: no such key in the example"
    assert "DATABASE_URL" in env


def test_secret_example_holds_only_placeholders() -> None:
    path = K8S_DIR / "secret.example.yaml"
    assert "EXAMPLE ONLY" in path.read_text()
    data = _objects()["Secret/charts-secrets"]["stringData"]
    assert "REPLACE-ME" in data["secret-key"]
    assert "REPLACE-ME" in data["database-url"]


@pytest.mark.parametrize("name", ["Deployment/charts-backend", "Job/charts-backend-migrate"])
def test_runs_as_the_image_user_on_a_read_only_root(name: str) -> None:
    owner = _objects()[name]
    pod = owner["spec"]["template"]["spec"]
    user, _, group = dockerfile.runtime_stage().last("USER").value.strip().partition(":")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == int(user)
    assert pod["securityContext"]["runAsGroup"] == int(group)
    assert pod["automountServiceAccountToken"] is False
    container = _container(owner)
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert container["image"] == _container(_deployment())["image"]

    # Every writable path is an emptyDir: /tmp, and the metrics directory when one is set.
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    env = _env(container)
    if "PROMETHEUS_MULTIPROC_DIR" in env:
        assert "emptyDir" in volumes[mounts[env["PROMETHEUS_MULTIPROC_DIR"]["value"]]]
    assert set(mounts.values()) == set(volumes)


def test_deployment_sets_the_metrics_directory() -> None:
    assert "PROMETHEUS_MULTIPROC_DIR" in _env(_container(_deployment()))


def test_migration_job_runs_alembic_once() -> None:
    job = _objects()["Job/charts-backend-migrate"]
    assert _container(job)["command"] == ["alembic", "upgrade", "head"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] >= 1


def test_service_and_autoscaler_point_at_the_deployment() -> None:
    objects = _objects()
    deployment = _deployment()
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = objects["Service/charts-backend-service"]
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == 80
    assert port["targetPort"] in ("http", 8000)

    hpa = objects["HorizontalPodAutoscaler/charts-backend"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] >= 2
    # The autoscaler owns the replica count; a fixed one would fight it on every apply.
    assert "replicas" not in deployment["spec"]
    # CPU utilisation is measured against the request, which must therefore be set.
    assert _container(deployment)["resources"]["requests"]["cpu"]


def test_migration_pods_are_not_service_endpoints() -> None:
    service = _objects()["Service/charts-backend-service"]
    job = _objects()["Job/charts-backend-migrate"]
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert not service["spec"]["selector"].items() <= labels.items()


def test_kustomization_lists_the_long_lived_objects() -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    resources = kustomization["resources"]
    for name in resources:
        assert (K8S_DIR / name).is_file(), name
    assert "secret.example.yaml" not in resources
    assert "migrate-job.yaml" not in resources
    assert {"deployment.yaml", "service.yaml", "hpa.yaml"} <= set(resources)
