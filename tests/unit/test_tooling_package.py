"""The tooling package beside the product: the product never imports it, its commands join the
``fulfill`` command line, and importing the load test registers no DBOS workflow."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import typer
from typer.testing import CliRunner

from fulfill.cli import app

SRC = Path(__file__).resolve().parents[2] / "src"


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_product_imports_nothing_of_the_tooling() -> None:
    offenders = [
        str(path.relative_to(SRC))
        for path in sorted((SRC / "fulfill").rglob("*.py"))
        if any(name.split(".")[0] == "fulfill_tools" for name in _imported_modules(path))
    ]
    assert offenders == []


def test_the_tooling_commands_are_on_the_command_line() -> None:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    commands = group.commands
    assert {"demo", "e2e", "dev", "bench"} <= set(commands)
    runner = CliRunner()
    assert "salesforce" in runner.invoke(app, ["dev", "--help"]).output
    load_help = runner.invoke(app, ["bench", "load", "--help"]).output
    for option in ("--rates", "--burst", "--serial", "--no-floor", "--append-doc", "--workers"):
        assert option in load_help


def _modules_after(statement: str) -> str:
    code = f"import sys; {statement}; print(sorted(m for m in sys.modules if m.startswith('fulfill_tools')))"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout


def test_importing_the_load_test_registers_no_workflow() -> None:
    loaded = _modules_after("import fulfill_tools.loadtest")
    assert "'fulfill_tools.loadtest'" in loaded
    assert "fulfill_tools.floor" not in loaded


def test_the_command_line_loads_the_tools_but_not_their_work() -> None:
    loaded = _modules_after("import fulfill.cli.app")  # the whole command line
    assert "'fulfill_tools.cli'" in loaded
    for heavy in ("loadtest", "floor", "e2e", "dev", "demo", "launch"):
        assert f"'fulfill_tools.{heavy}" not in loaded
