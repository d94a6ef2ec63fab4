"""Where the command line writes: results on stdout, everything a person reads on stderr."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from fulfill.cli.base import Options as Options
from fulfill.cli.base import options as options

# Output that is piped or redirected goes to programs and to files read in a wide window: Rich
# would cut its tables at 80 columns there (``CREATE_INTERNAL…``), so it gets room instead.
PIPED_WIDTH = 4096


def _console(*, stderr: bool = False) -> Console:
    probe = Console(stderr=stderr)
    return probe if probe.is_terminal else Console(stderr=stderr, width=PIPED_WIDTH)


console = _console()
err_console = _console(stderr=True)


def note(line: str) -> None:
    """A line for the person at the terminal (stderr), printed as it is."""
    err_console.print(escape(line), highlight=False, soft_wrap=True)


def error_line(line: str) -> None:
    """``error: …`` on stderr."""
    err_console.print(f"[red]error:[/red] {escape(line)}", highlight=False, soft_wrap=True)
