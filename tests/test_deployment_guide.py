"""The runnable walkthrough of docs/deployment.md, executed as written against a real server."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .servers import free_port

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "deployment.md"
RUNNABLE = re.compile(r"<!-- runnable -->\n```bash\n(.*?)```", re.DOTALL)


def runnable_blocks() -> list[str]:
    return RUNNABLE.findall(GUIDE.read_text())


def test_the_guide_marks_its_walkthrough_runnable() -> None:
    script = "\n".join(runnable_blocks())
    for step in ("alembic upgrade head", "apikey create", "token create", "Authorization: Bearer"):
        assert step in script
    for path in ("/health", "/health/ready", "/metrics", "X-API-Key"):
        assert path in script


@pytest.mark.slow
def test_the_walkthrough_runs_as_written(tmp_path: Path) -> None:
    if shutil.which("curl") is None or shutil.which("openssl") is None:
        pytest.fail("the walkthrough needs curl and openssl on the PATH")
    shutil.copy(ROOT / "alembic.ini", tmp_path)
    shutil.copytree(ROOT / "migrations", tmp_path / "migrations")
    port = str(free_port())
    blocks = [block.replace("8000", port) for block in runnable_blocks()]
    script = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"
    script += "\n".join(f"echo '--- step {n}'\n{block}" for n, block in enumerate(blocks, 1))
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.isupper() or key in {"PATH", "HOME", "LANG", "TMPDIR", "USER"}
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    log = (tmp_path / "server.log").read_text() if (tmp_path / "server.log").exists() else ""
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\nserver.log:\n{log[-3000:]}"
    assert "--- step 5" in result.stdout
    assert '"chartId":"chart1"' in result.stdout
    assert "http_requests_total" in result.stdout
    assert '"status":"ready"' in result.stdout
