"""The Dockerfile, read as text: a wheel built in one stage and installed into a slim runtime
stage of the same pinned base image, a Python the package supports, an unprivileged user, a
health check on /healthz, `fulfill` as the entry point (`serve --role api|worker`, `migrate`), no
secret baked in, and a build context (.dockerignore) that keeps what the build copies."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

from fulfill.config import Settings

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "Dockerfile").read_text(encoding="utf-8")
# One instruction per logical line (continuations joined), comments left out.
INSTRUCTIONS = [
    line.strip()
    for line in re.sub(r"\\\n\s*", " ", TEXT).splitlines()
    if line.strip() and not line.lstrip().startswith("#")
]
SETTINGS = {f"FULFILL_{name.upper()}" for name in Settings.model_fields}


def _instructions(keyword: str) -> list[str]:
    return [line.split(None, 1)[1] for line in INSTRUCTIONS if line.split(None, 1)[0].upper() == keyword]


def test_two_stages_of_one_pinned_base_image_with_a_supported_python() -> None:
    stages = [re.fullmatch(r"(\S+) AS (\w+)", line) for line in _instructions("FROM")]
    assert all(stages), _instructions("FROM")
    images = {match.group(1) for match in stages if match}
    assert [match.group(2) for match in stages if match] == ["build", "runtime"]
    assert len(images) == 1, f"build and runtime stages share one base image: {images}"
    image = images.pop()
    version = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim-\w+", image)
    assert version, f"the base image is pinned by a full version tag: {image}"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(part) for part in re.fullmatch(r">=(\d+)\.(\d+)", requires).groups())  # type: ignore[union-attr]
    assert (int(version.group(1)), int(version.group(2))) >= minimum


def test_the_runtime_gets_the_built_environment_only_and_runs_unprivileged() -> None:
    runtime = TEXT.split(" AS runtime", 1)[1]
    assert "COPY --from=build /opt/fulfill /opt/fulfill" in runtime
    assert "COPY src" not in runtime
    assert "pip install" not in runtime
    users = _instructions("USER")
    assert users == ["10001:10001"], "a numeric non-root user, as Kubernetes' runAsNonRoot checks"
    assert "--uid 10001" in TEXT
    assert "--gid 10001" in TEXT
    # The wheel, with the PostgreSQL driver of pyproject.toml's postgres extra.
    postgres = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][
        "postgres"
    ]
    assert f'"{postgres[0]}"' in TEXT
    assert "pip wheel --no-deps --wheel-dir /wheels ." in TEXT


def test_health_check_entry_point_and_roles() -> None:
    (healthcheck,) = _instructions("HEALTHCHECK")
    assert "/healthz" in healthcheck
    assert "FULFILL_PORT" in healthcheck
    assert _instructions("ENTRYPOINT") == ['["fulfill"]']
    assert _instructions("CMD") == ['["serve"]']
    assert _instructions("EXPOSE") == ["8080"]
    assert "FULFILL_PORT=8080" in " ".join(_instructions("ENV"))


def test_no_secret_and_only_real_settings_in_the_environment() -> None:
    named = set(re.findall(r"\b(FULFILL_[A-Z0-9_]+)=", " ".join(_instructions("ENV"))))
    assert named == {"FULFILL_HOST", "FULFILL_PORT"}
    assert named <= SETTINGS
    assert not _instructions("ARG"), "nothing is passed in at build time (a secret would stay in the image)"


def test_the_build_context_keeps_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def kept(path: str) -> bool:
        keep = True
        for pattern in patterns:
            negated = pattern.startswith("!")
            body = pattern.removeprefix("!").rstrip("/")
            if fnmatch.fnmatch(path, body) or path.startswith(body + "/"):
                keep = negated
        return keep

    sources = [
        source
        for line in _instructions("COPY")
        if not line.startswith("--from")
        for source in line.split()[:-1]
    ]
    assert sources
    for source in sources:
        assert kept(source), f".dockerignore leaves out {source}, which the Dockerfile copies"
    assert kept("src/fulfill/store/alembic.ini")
    assert not kept(".venv/bin/python")
    assert not kept(".git/HEAD")
    assert not kept("tests/conftest.py")
