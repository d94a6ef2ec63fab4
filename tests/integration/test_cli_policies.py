"""``fulfill policies …`` and ``fulfill approve --parameters`` against a running service."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fulfill.cli import app
from tests.support.harness import TEST_SECRET, Harness


@pytest.fixture
def cli(shared: Harness, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("FULFILL_DATABASE_URL", shared.settings.database_url)
    monkeypatch.setenv("FULFILL_JWT_SECRET", TEST_SECRET)
    monkeypatch.setenv("FULFILL_URL", shared.url)
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner()


# --- a body that is not a JSON object never reaches the service --------------------------------


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "cannot read"),
        ("{not json", "is not JSON"),
        ('["a list"]', "must hold a JSON object"),
    ],
)
@pytest.mark.parametrize(
    "command",
    [
        ["policies", "create"],
        ["policies", "update", "pol_x"],
        ["policies", "simulate"],
        ["approve", "ai_whatever"],
    ],
)
def test_a_file_that_is_not_a_json_object_is_refused_naming_the_option(
    cli: CliRunner, tmp_path: Path, command: list[str], content: str | None, words: str
) -> None:
    path = tmp_path / "body.json"
    if content is not None:
        path.write_text(content)
    option = "--parameters" if command[0] == "approve" else "--file"
    # The service is not asked: an unreachable URL changes nothing.
    result = cli.invoke(app, [*command, "--tenant", "t1", option, str(path), "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 2, result.output
    assert option in result.stderr
    assert words in result.stderr
