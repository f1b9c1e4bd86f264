"""The browser client shipped in the package is the build of ``clients/js`` as committed: a
fresh ``tsc`` build gives the same files, byte for byte."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from lightweight_charts_pro_backend.client_js.routes import MODULE_DIR
from lightweight_charts_pro_backend.demo.page import library_version
from tests.servers import missing

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "js"
TSC = CLIENT / "node_modules" / "typescript" / "bin" / "tsc"


def test_committed_module_is_a_fresh_build(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None or not TSC.is_file():
        missing("node and clients/js/node_modules (make client-js)")
    result = subprocess.run(
        [node, str(TSC), "-p", str(CLIENT / "tsconfig.json"), "--outDir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    fresh = {path.name: path.read_bytes() for path in tmp_path.glob("*.js")}
    shipped = {path.name: path.read_bytes() for path in MODULE_DIR.glob("*.js")}
    assert sorted(shipped) == sorted(fresh), "run `npm run ship` in clients/js"
    stale = [name for name in fresh if fresh[name] != shipped[name]]
    assert stale == [], f"{stale} differ from a fresh build: run `npm run ship` in clients/js"


def test_package_manifest() -> None:
    manifest = json.loads((CLIENT / "package.json").read_text())
    assert manifest["version"] == "0.1.0"
    assert manifest["type"] == "module"
    assert manifest["exports"]["."] == {
        "types": "./dist/charts-client.d.ts",
        "import": "./dist/charts-client.js",
    }
    assert manifest["peerDependencies"] == {"lightweight-charts": ">=5"}
    assert "dependencies" not in manifest, "the client has no runtime dependency"
    # Typed against the version the demo page draws with.
    assert manifest["devDependencies"]["lightweight-charts"] == library_version()
