"""docs/OPERATIONS.md lists every migration, and names the newest as the one a database is at today."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = ROOT / "src" / "fulfill" / "store" / "migrations" / "versions"


def test_the_revision_table_runs_to_the_newest_migration() -> None:
    text = (ROOT / "docs" / "OPERATIONS.md").read_text(encoding="utf-8")
    files = sorted(path.name for path in VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py"))
    listed = re.findall(r"^\| `(\d{4})` \(`(\d{4}_\w+\.py)`\) \|", text, flags=re.MULTILINE)
    assert [name for _, name in listed] == files
    assert all(name.startswith(revision) for revision, name in listed)
    newest = files[-1][:4]
    today = re.search(r"`(\d{4})` today", text)
    assert today is not None
    assert today.group(1) == newest
