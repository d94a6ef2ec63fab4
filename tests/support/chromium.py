"""What every browser test shares: Debian's headless Chromium (or ``FULFILL_TEST_CHROMIUM``), the
marks that skip a test without it or without Playwright, and where screenshots go."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support import postgres

CHROMIUM = os.environ.get("FULFILL_TEST_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = (
    Path(__file__).resolve().parents[2]
    / "artifacts"
    / "console-screenshots"
    / ("postgresql" if postgres.enabled() else "sqlite")
)

BROWSER_MARKS = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)),
        reason=f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; scripts/test.sh installs it as root)",
    ),
]
