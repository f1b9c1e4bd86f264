"""The image, checked without Docker: the Dockerfile's own steps, run on this machine.

The builder stage's ``RUN`` builds the wheels from a copy of the build context (``.dockerignore``
applied); the runtime stage's install ``RUN`` puts them into a fresh virtual environment, which
stands for the image's Python. Then the Dockerfile's exact ``CMD`` runs as the image's ``USER``,
with only the image's environment, from a working directory it cannot write, in a network
namespace of its own (so the fixed port 8000 of the image is free whatever else runs here); the
exact ``HEALTHCHECK`` command, run the same way in that namespace, must then succeed.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from . import dockerfile

pytestmark = [
    pytest.mark.slow,
    # Switching to the image's uid and making a network namespace both need root (CI runs as root).
    pytest.mark.skipif(os.geteuid() != 0, reason="the image smoke test needs root"),
]

START_DEADLINE_SECONDS = 60.0
STOP_DEADLINE_SECONDS = 10.0  # docker stop's default grace period
USER_CREATION = ("groupadd", "useradd")


def _tool(name: str) -> str:
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if path is None:
        pytest.fail(f"{name} is missing; scripts/system-deps.sh installs it")
    return path


def _run_shell(command: str, cwd: Path, path_dirs: list[Path], timeout: float) -> None:
    env = {
        "PATH": ":".join([*map(str, path_dirs), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(cwd),
        "LANG": "C.UTF-8",
        # The session's pip configuration (index mirrors) still applies: it is how this machine
        # reaches the package index the builder image would reach directly.
        **{k: v for k, v in os.environ.items() if k.startswith("PIP_")},
    }
    result = subprocess.run(
        ["/bin/sh", "-c", command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, (
        f"{command}\nexit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )


def _image_python(uid: int, gid: int) -> Path:
    """A Python >= 3.11 that the image's user can run; it stands for the image's interpreter.

    The one running the tests may be unreadable for that user (pyenv under /root): a virtual
    environment made from it would quietly start another Python as that user, so the first
    candidate that reports the same version to root and to the user is taken.
    """
    probe = "import sys, ensurepip, venv; print(sys.version)"
    candidates = [
        Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}",
        Path("/usr/bin/python3.11"),
        Path("/usr/bin/python3"),
    ]
    for candidate in candidates:
        if not candidate.exists():
            continue
        answers = [
            subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
            for argv in (
                [str(candidate), "-c", probe],
                _as_image_user([str(candidate), "-c", probe], uid, gid),
            )
        ]
        if any(a.returncode != 0 for a in answers) or answers[0].stdout != answers[1].stdout:
            continue
        if tuple(map(int, answers[0].stdout.split()[0].split(".")[:2])) >= (3, 11):
            return candidate
    pytest.fail("no Python >= 3.11 with venv that uid 1000 can run (scripts/system-deps.sh)")


def _new_venv(python: Path, path: Path) -> Path:
    subprocess.run([str(python), "-m", "venv", str(path)], check=True, timeout=120)
    return path / "bin"


def _user_ids(stage: dockerfile.Stage) -> tuple[int, int]:
    user, _, group = stage.last("USER").value.strip().partition(":")
    assert user.isdigit() and group.isdigit(), "USER must be numeric uid:gid"
    return int(user), int(group)


@pytest.fixture(scope="module")
def image_root() -> Iterator[Path]:
    # Not pytest's tmp_path: its parents are private to root, and the server runs as uid 1000.
    root = Path(tempfile.mkdtemp(prefix="charts-image-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        for path in [root, *root.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(root)


@pytest.fixture(scope="module")
def installed_image(image_root: Path) -> Path:
    """Build like the Dockerfile and return the runtime stage's root filesystem."""
    context = dockerfile.build_context(image_root / "context")
    builder = dockerfile.stage_named("builder")
    builder_fs = image_root / "builder"
    dockerfile.apply_copies(builder, context, builder_fs)
    runtime = dockerfile.runtime_stage()
    # Builder and runtime share one interpreter version, as python:3.11 and python:3.11-slim do.
    python = _image_python(*_user_ids(runtime))
    builder_bin = _new_venv(python, image_root / "builder-python")
    for instruction in builder.all("RUN"):
        _run_shell(
            instruction.value,
            builder_fs / builder.workdir.lstrip("/"),
            [builder_bin],
            timeout=300,
        )

    runtime_fs = image_root / "runtime"
    dockerfile.apply_copies(runtime, context, runtime_fs)
    python_env = image_root / "python"
    _new_venv(python, python_env)
    installs = 0
    for instruction in runtime.all("RUN"):
        flags, command = instruction.flags_and_rest()
        mount = dict(part.split("=", 1) for part in flags.get("mount", "").split(",") if part)
        if mount.get("from") == builder.name:
            source = builder_fs / mount["source"].lstrip("/")
            command = command.replace(mount["target"], str(source))
            _run_shell(command, runtime_fs, [python_env / "bin"], timeout=300)
            installs += 1
        else:
            # Creating the image's user (and its /data) is the one step not replayed here; the
            # server runs under the numeric USER instead.
            assert command.split()[0] in USER_CREATION, (
                f"line {instruction.line}: the smoke test does not know how to replay {command!r}"
            )
    assert installs == 1, "expected one RUN installing the wheels mounted from the builder"

    workdir = runtime_fs / runtime.workdir.lstrip("/")
    for path in [*workdir.rglob("*"), workdir]:
        mode = 0o555 if path.is_dir() else 0o444
        path.chmod(mode)
    return runtime_fs


def _image_env(python_env: Path) -> dict[str, str]:
    runtime = dockerfile.runtime_stage()
    return {
        # What python:3.11-slim itself sets, with this machine's interpreter in place of its own.
        "PATH": f"{python_env / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": "/nonexistent",
        **runtime.env,
        # Supplied at run time (docker run -e / a Secret), as every deployment must.
        "SECRET_KEY": secrets.token_hex(32),
    }


def _as_image_user(argv: list[str], uid: int, gid: int) -> list[str]:
    return [
        _tool("setpriv"),
        f"--reuid={uid}",
        f"--regid={gid}",
        "--clear-groups",
        "--no-new-privs",
        "--",
        *argv,
    ]


def _cmd_argv(runtime_fs: Path) -> list[str]:
    """The CMD with paths inside the image's WORKDIR pointed at the replayed one."""
    workdir = dockerfile.runtime_stage().workdir.rstrip("/") + "/"
    mapped = str(runtime_fs / workdir.lstrip("/"))
    return [
        mapped.rstrip("/") + "/" + arg[len(workdir) :] if arg.startswith(workdir) else arg
        for arg in dockerfile.cmd()
    ]


def test_cmd_serves_and_healthcheck_passes(installed_image: Path, image_root: Path) -> None:
    runtime = dockerfile.runtime_stage()
    uid, gid = _user_ids(runtime)
    env = _image_env(image_root / "python")
    workdir = installed_image / runtime.workdir.lstrip("/")
    assert not stat.S_IMODE(workdir.stat().st_mode) & 0o222, "workdir must be read-only"

    log = (image_root / "server.log").open("w+")
    server = subprocess.Popen(
        [
            _tool("unshare"),
            "--net",
            "--",
            "/bin/sh",
            "-c",
            f'{_tool("ip")} link set lo up && exec "$@"',
            "sh",
            *_as_image_user(_cmd_argv(installed_image), uid, gid),
        ],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    options, check = dockerfile.healthcheck()
    check_timeout = float(options.get("timeout", "30s").rstrip("s"))
    in_namespace = [_tool("nsenter"), f"--net=/proc/{server.pid}/ns/net", "--"]
    try:
        deadline = time.monotonic() + START_DEADLINE_SECONDS
        result = None
        while time.monotonic() < deadline and server.poll() is None:
            result = subprocess.run(
                [*in_namespace, *_as_image_user(check, uid, gid)],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=check_timeout + 5,
                check=False,
            )
            if result.returncode == 0:
                break
            time.sleep(0.3)
        log.seek(0)
        output = log.read()
        assert server.poll() is None, f"the CMD exited with {server.returncode}:\n{output}"
        assert result is not None and result.returncode == 0, (
            f"HEALTHCHECK failed within {START_DEADLINE_SECONDS:g} s:\n"
            f"{result and result.stderr}\nserver output:\n{output}"
        )
        uids = Path(f"/proc/{server.pid}/status").read_text().split("Uid:")[1].split()[:4]
        assert set(uids) == {str(uid)}, f"server runs with uids {uids}"
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
        try:
            code = server.wait(STOP_DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
            code = None
        log.close()
    # uvicorn re-raises the signal once its shutdown is complete, so -SIGTERM is a clean stop too;
    # a server that ignored SIGTERM would have needed the SIGKILL above (code None).
    assert code in (0, -signal.SIGTERM), f"the server did not stop on SIGTERM (exit {code})"


def test_healthcheck_fails_when_nothing_listens(installed_image: Path, image_root: Path) -> None:
    runtime = dockerfile.runtime_stage()
    uid, gid = _user_ids(runtime)
    _, check = dockerfile.healthcheck()
    result = subprocess.run(
        [_tool("unshare"), "--net", "--", *_as_image_user(check, uid, gid)],
        cwd=installed_image / runtime.workdir.lstrip("/"),
        env=_image_env(image_root / "python"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0


def test_migration_command_runs_in_the_image(installed_image: Path, image_root: Path) -> None:
    """The Compose ``migrate`` command (the Kubernetes Job's too), as the image user, on SQLite."""
    if not (dockerfile.ROOT / "alembic.ini").exists():
        pytest.skip("alembic.ini is not in this checkout (it comes with the persistence work)")
    compose = yaml.safe_load((dockerfile.ROOT / "docker-compose.yml").read_text())
    command = compose["services"]["migrate"]["command"]
    runtime = dockerfile.runtime_stage()
    uid, gid = _user_ids(runtime)
    data = image_root / "data"
    data.mkdir()
    os.chown(data, uid, gid)
    env = {**_image_env(image_root / "python"), "DATABASE_URL": f"sqlite+aiosqlite:///{data}/c.db"}
    result = subprocess.run(
        _as_image_user(command, uid, gid),
        cwd=installed_image / runtime.workdir.lstrip("/"),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (data / "c.db").stat().st_size > 0


def test_cli_issues_a_token_in_the_image(installed_image: Path, image_root: Path) -> None:
    """``docker compose exec api charts-backend token create ...`` as the guide shows it."""
    runtime = dockerfile.runtime_stage()
    uid, gid = _user_ids(runtime)
    result = subprocess.run(
        _as_image_user(["charts-backend", "token", "create", "--sub", "smoke"], uid, gid),
        cwd=installed_image / runtime.workdir.lstrip("/"),
        env=_image_env(image_root / "python"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", result.stdout.strip()), result.stdout


def test_image_ships_the_browser_client(installed_image: Path, image_root: Path) -> None:
    """The wheel carries the built browser client that ``/client/charts-client.js`` serves."""
    from lightweight_charts_pro_backend.client_js.routes import MODULE_DIR

    installed = list(
        (image_root / "python").glob(
            "lib/python3*/site-packages/lightweight_charts_pro_backend/client_js/module"
        )
    )
    assert len(installed) == 1, installed
    shipped = {path.name: path.read_bytes() for path in installed[0].glob("*.js")}
    assert shipped == {path.name: path.read_bytes() for path in MODULE_DIR.glob("*.js")}
