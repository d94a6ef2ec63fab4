"""README.md's configuration table is the settings class, row for row: every ``Settings`` field
appears exactly once as ``FULFILL_<NAME>``, and no row names a variable nothing reads."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from fulfill.config import Settings

ROOT = Path(__file__).resolve().parents[2]
# Variables read outside the settings class (the CLI's own), each checked to exist in the source.
OUTSIDE_SETTINGS = {"FULFILL_URL": "src/fulfill/cli/options.py"}


def _table_variables() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    names: list[str] = []
    for line in section.splitlines():
        if not line.startswith("| `FULFILL_"):
            continue
        first_cell = line.split("|")[1]
        names.extend(re.findall(r"`(FULFILL_[A-Z0-9_]+)`", first_cell))
    return names


def test_every_setting_is_in_the_table_exactly_once() -> None:
    counts = Counter(_table_variables())
    expected = {f"FULFILL_{name.upper()}" for name in Settings.model_fields}
    missing = sorted(expected - set(counts))
    repeated = sorted(name for name, n in counts.items() if n > 1)
    assert not missing, f"settings missing from README's configuration table: {missing}"
    assert not repeated, f"listed more than once in README's configuration table: {repeated}"


def test_no_row_names_a_variable_that_does_not_exist() -> None:
    known = {f"FULFILL_{name.upper()}" for name in Settings.model_fields}
    unknown = []
    for name in _table_variables():
        if name in known:
            continue
        where = OUTSIDE_SETTINGS.get(name)
        if where is None or name not in (ROOT / where).read_text(encoding="utf-8"):
            unknown.append(name)
    assert not unknown, f"README's configuration table names variables nothing reads: {unknown}"
