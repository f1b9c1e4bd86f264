"""The ``charts-backend`` command, run as users run it: a subprocess with settings in ``.env``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lightweight_charts_pro_backend.auth import decode_access_token

from .conftest import SECRET, make_settings


def run(tmp_path: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "API_KEYS")}
    script = shutil.which("charts-backend", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "lightweight_charts_pro_backend.cli"]
    result = subprocess.run(
        [*command, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert (result.returncode == 0) is ok, result.stderr
    return result


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / ".env").write_text(f"SECRET_KEY={SECRET}\n")
    return tmp_path


def test_token_create(workdir: Path) -> None:
    out = run(
        workdir, "token", "create", "--sub", "u1", "--charts", "a,b", "--scope", "charts:read",
        "--minutes", "7",
    ).stdout  # fmt: skip
    principal = decode_access_token(out.strip(), make_settings())
    assert principal.sub == "u1"
    assert principal.chart_ids == frozenset({"a", "b"})
    assert principal.scopes == frozenset({"charts:read"})


def test_token_create_refuses_bad_charts(workdir: Path) -> None:
    result = run(workdir, "token", "create", "--sub", "u", "--charts", "../x", ok=False)
    assert "chart ids are" in result.stderr


def test_apikey_lifecycle_with_persistence_off(workdir: Path) -> None:
    created = run(workdir, "apikey", "create", "--name", "ingest", "--charts", "a").stdout
    lines = created.splitlines()
    secret = lines[1]
    setting = lines[-1]
    assert secret.startswith("lcp_") and setting.startswith("API_KEYS='")
    (workdir / ".env").write_text(f"SECRET_KEY={SECRET}\n{setting}\n")
    second = run(workdir, "apikey", "create", "--name", "reader", "--scope", "charts:read")
    setting = second.stdout.splitlines()[-1]
    (workdir / ".env").write_text(f"SECRET_KEY={SECRET}\n{setting}\n")
    assert secret not in (workdir / ".env").read_text()

    listing = run(workdir, "apikey", "list").stdout.splitlines()
    assert listing[0].split() == ["ID", "NAME", "CHARTS", "SCOPE", "CREATED", "REVOKED"]
    rows = {line.split()[1]: line.split() for line in listing[1:]}
    assert rows["ingest"][2] == "a" and rows["reader"][2] == "*"
    key_id = rows["ingest"][0]

    revoked = run(workdir, "apikey", "revoke", key_id).stdout.splitlines()[-1]
    (workdir / ".env").write_text(f"SECRET_KEY={SECRET}\n{revoked}\n")
    listing = run(workdir, "apikey", "list").stdout.splitlines()
    row = next(line.split() for line in listing if line.startswith(key_id))
    assert len(row) == 7  # the revoked time is filled in

    assert "No API key has id" in run(workdir, "apikey", "revoke", "0" * 12, ok=False).stderr


def test_help_and_bad_input(workdir: Path) -> None:
    assert "token" in run(workdir, "--help").stdout
    assert run(workdir, "apikey", "create", "--name", "bad'name", ok=False).stderr
    assert run(workdir, "token", "create", "--sub", "u", "--scope", "admin", ok=False).stderr
