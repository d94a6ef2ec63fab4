"""What the container image runs: the wheel the Dockerfile builds, from the build context its
.dockerignore keeps, holds every file of the package and serves both roles. The wheel is built as
the Dockerfile's build stage builds it (``pip wheel --no-deps``) and run from where it is unpacked,
with the commands the image's entry point takes: ``migrate``, ``serve --role api``,
``serve --role worker``. No image is built: no daemon runs here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fulfill_tools.launch import free_port, local_url, stop_all, wait_ready
from tests.support import postgres
from tests.support.harness import TEST_SECRET, fresh_database_url

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "src")  # what the Dockerfile copies, .dockerignore keeps


def _package_files(root: Path) -> set[str]:
    return {
        str(path.relative_to(root))
        for package in ("fulfill", "fulfill_tools")
        for path in (root / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    context = tmp_path_factory.mktemp("context")
    for source in SOURCES:
        if (ROOT / source).is_dir():
            shutil.copytree(
                ROOT / source, context / source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
        else:
            shutil.copy2(ROOT / source, context / source)
    wheels = tmp_path_factory.mktemp("wheels")
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(wheels),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("fulfill-*.whl")
    target = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    return target


def _env(unpacked: Path, database_url: str, **settings: str) -> dict[str, str]:
    return {
        **os.environ,
        # The unpacked wheel comes first on the path: its fulfill, not the checkout's, is run.
        "PYTHONPATH": str(unpacked),
        "DBOS__DISABLE_TELEMETRY": "true",
        "FULFILL_DATABASE_URL": database_url,
        "FULFILL_JWT_SECRET": TEST_SECRET,
        "FULFILL_HOST": "127.0.0.1",
        "FULFILL_LOG_LEVEL": "WARNING",
        **settings,
    }


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    url = fresh_database_url(tmp_path)
    yield url
    if postgres.is_postgres_url(url):
        postgres.drop_database(url)


def test_the_wheel_holds_every_file_of_the_package(unpacked: Path) -> None:
    missing = sorted(_package_files(ROOT / "src") - _package_files(unpacked))
    assert missing == []


def test_the_wheel_migrates_and_serves_both_roles(unpacked: Path, database_url: str, tmp_path: Path) -> None:
    env = _env(unpacked, database_url)
    where = subprocess.run(
        [sys.executable, "-c", "import fulfill; print(fulfill.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.strip().startswith(str(unpacked))
    migrated = subprocess.run(
        [sys.executable, "-m", "fulfill", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert "database at revision" in migrated.stdout

    processes: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    urls = {}
    try:
        for role in ("api", "worker"):
            port = free_port()
            log = tmp_path / f"{role}.log"
            with log.open("ab") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "fulfill", "serve", "--role", role],
                    env=_env(
                        unpacked, database_url, FULFILL_PORT=str(port), FULFILL_EXECUTOR_ID=f"wheel-{role}"
                    ),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            processes[role] = (process, log)
            urls[role] = local_url(port)
        for url in urls.values():
            wait_ready(url, processes)
        for role, url in urls.items():
            assert httpx.get(f"{url}/healthz", timeout=10).json() == {"status": "ok"}
            checks = httpx.get(f"{url}/readyz", timeout=10).json()["checks"]
            assert checks["workers"] == ("not in this role" if role == "api" else "ok")
        # The console's files are in the wheel and served from it.
        page = httpx.get(f"{urls['api']}/console/static/console.css", timeout=10)
        assert page.status_code == 200
        assert page.content == (ROOT / "src/fulfill/console/static/console.css").read_bytes()
    finally:
        stop_all(process for process, _ in processes.values())
