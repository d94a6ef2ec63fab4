"""Load benchmark: ``python -m bench.load …`` is ``fulfill bench load …`` (see fulfill_tools.loadtest).

python -m bench.load --rates 10,20,50 --seconds 15 --burst 400
"""

from __future__ import annotations

import os
import sys

from fulfill.cli import app


def main() -> None:
    os.environ.setdefault("DBOS__DISABLE_TELEMETRY", "true")
    app(["bench", "load", *sys.argv[1:]], prog_name="fulfill")


if __name__ == "__main__":
    main()
