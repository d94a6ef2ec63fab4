"""README.md's command blocks, run as a newcomer would: in order, in one bash session, from a
directory that has the repository's ``.venv`` and ``examples/``, with nothing on ``PATH`` from the
venv (a bare ``fulfill`` is "command not found" there, as after the quick start).

The quick start's block (install, ``fulfill serve --demo``, ``./scripts/test.sh``) is the one the
test replaces: it starts ``.venv/bin/fulfill serve --demo`` itself, in the background, as the
service the reader left running. A later block that starts ``fulfill serve &`` follows the
README's "stop the service you started (Ctrl+C)": the test stops the services it knows of first.
The README's ports (8080 for the service, 8900 for the local Salesforce, 8901 for the example MCP
server) are replaced by free ones, and ``FULFILL_PORT`` is set to the service's, so that a test
run never meets a service a person left running. Blocks whose first line is
``# not run by the README test: <why>`` are skipped (external services only), and there are few.

Every block runs with ``set -e -o pipefail``; then the transcript must show what the README
promises (the executions' ends, the undo of a cancelled ticket, the Salesforce task) and no
API answer that is an error.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fulfill_tools.launch import free_port
from tests.support import postgres

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SKIP_MARK = "# not run by the README test:"
MAX_SKIPPED = 6
SERVE_IN_BACKGROUND = re.compile(r"^\S*fulfill serve\b[^#]*&\s*(#.*)?$")
BARE_FULFILL = re.compile(r"(?:^|[;&|(]\s*|\$\(\s*)fulfill\s")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        postgres.enabled(), reason="the README's quick start runs on SQLite: the SQLite pass runs it"
    ),
]


def readme_blocks() -> list[tuple[int, str]]:
    """Every fenced ``bash`` block (indented ones too, dedented), with its line in README.md."""
    blocks: list[tuple[int, str]] = []
    lines = README.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = re.match(r"^( *)```bash\s*$", lines[i])
        if match is None:
            i += 1
            continue
        indent, start, body = len(match.group(1)), i + 1, []
        i += 1
        while not lines[i].strip().startswith("```"):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        blocks.append((start, "\n".join(body)))
        i += 1
    return blocks


def test_the_readme_blocks_are_marked_and_call_the_installed_command() -> None:
    blocks = readme_blocks()
    first = blocks[0][1]
    assert "fulfill serve --demo" in first, "the quick start comes first"
    assert "./scripts/test.sh" in first, "the quick start comes first"
    skipped = [(line, text) for line, text in blocks if text.startswith(SKIP_MARK)]
    assert len(skipped) <= MAX_SKIPPED, f"too many README blocks are not run: {[line for line, _ in skipped]}"
    for line, text in skipped:
        reason = text.splitlines()[0][len(SKIP_MARK) :].strip()
        assert reason.startswith("needs "), f"README.md:{line}: say what the block needs"
    for line, text in blocks:
        for n, command in enumerate(text.splitlines()):
            code = command.split(" #", 1)[0]
            if not code.lstrip().startswith("#"):
                assert not BARE_FULFILL.search(code), (
                    f"README.md:{line + n + 1}: `fulfill` is not on PATH after the quick start; "
                    "write .venv/bin/fulfill"
                )


def _script(blocks: list[tuple[int, str]], ports: dict[str, int]) -> str:
    api = ports["8080"]
    parts = [
        "set -e -o pipefail",
        "__services=()",
        '__stop_services() { for p in "${__services[@]}"; do kill "$p" 2>/dev/null || true; '
        'wait "$p" 2>/dev/null || true; done; __services=(); }',
        "echo '### quick start: the service, started by the test'",
        ".venv/bin/fulfill serve --demo > quickstart.log 2>&1 &",
        "__services+=($!)",
        f"for _ in $(seq 240); do curl -sf http://127.0.0.1:{api}/readyz >/dev/null && break; sleep 0.5; done",
        f"curl -sf http://127.0.0.1:{api}/readyz >/dev/null || {{ cat quickstart.log; exit 1; }}",
    ]
    for line, text in blocks[1:]:
        if text.startswith(SKIP_MARK):
            continue
        for readme_port, port in ports.items():
            text = re.sub(rf"\b{readme_port}\b", str(port), text)
        parts.append(f"echo '### README.md line {line}'")
        body = text.splitlines()
        if any(SERVE_IN_BACKGROUND.match(command) for command in body):
            parts.append("__stop_services  # the reader's Ctrl+C")
        for command in body:
            parts.append(command)
            if SERVE_IN_BACKGROUND.match(command):
                parts.append("__services+=($!)")
    parts.append("echo '### README done'")
    return "\n".join(parts) + "\n"


def _end_session(session: int) -> None:
    """End the script and whatever it left running (its session's processes), as the reader would."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        members = _session_members(session)
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        for _ in range(100):
            if not _session_members(session):
                return
            time.sleep(0.2)


def _session_members(session: int) -> list[int]:
    listing = subprocess.run(["ps", "-eo", "pid=,sid=,stat="], capture_output=True, text=True, check=False)
    members = []
    for row in listing.stdout.splitlines():
        pid, sid, stat = row.split()
        if int(sid) == session and not stat.startswith("Z"):
            members.append(int(pid))
    return members


def test_every_readme_block_runs_as_written(tmp_path: Path) -> None:
    venv_bin = Path(sys.executable).parent
    assert (venv_bin / "fulfill").exists(), f"no fulfill command in {venv_bin}"
    (tmp_path / ".venv").symlink_to(venv_bin.parent)
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    ports = {"8080": free_port(), "8900": free_port(), "8901": free_port()}
    script = tmp_path / "readme.sh"
    script.write_text(_script(readme_blocks(), ports), encoding="utf-8")
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p) != venv_bin)
    env = {
        "PATH": path,
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "LANG": "C.UTF-8",
        "DBOS__DISABLE_TELEMETRY": "true",
        "FULFILL_PORT": str(ports["8080"]),
    }
    log = tmp_path / "transcript.txt"
    with log.open("wb") as out:
        # Output to a file, not a pipe: the services a block leaves in the background keep it open.
        process = subprocess.Popen(
            ["bash", str(script)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its background services are ended with it, below
        )
        try:
            process.wait(timeout=900)
        finally:
            _end_session(process.pid)
    transcript = log.read_text(encoding="utf-8", errors="replace")
    tail = transcript[-6000:]
    assert process.returncode == 0, f"a README block failed (see the last '### README.md line'):\n{tail}"
    assert "### README done" in transcript, tail
    errors = re.findall(r'"status":\s*[45]\d\d\b.*', transcript)
    assert not errors, f"the API answered errors: {errors[:3]}\n{tail}"
    assert transcript.count('"status": "SUCCEEDED"') >= 4, tail  # task, import, ticket, CRM task
    assert '"compensation_status": "COMPLETED"' in transcript, tail  # the cancelled ticket was undone
    assert '"state": "closed"' in transcript or '"state":"closed"' in transcript, tail
    assert '"system": "MCP:tickets"' in transcript, tail
    assert '"system": "CRM"' in transcript, tail
