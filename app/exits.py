"""Exit codes of the command line, and how a fault of the program is reported.

2: the user's input is at fault (one line naming it). 3: the program is at fault (one
line with the error's type; `--debug` or PHYMEM_DEBUG=1 adds the traceback).
"""

from __future__ import annotations

import os
import sys

EXIT_INVALID = 2
EXIT_INTERNAL = 3
_debug = False


def set_debug(enabled: bool) -> None:
    global _debug
    _debug = enabled


def debug_enabled() -> bool:
    return _debug or os.environ.get("PHYMEM_DEBUG", "").strip() not in ("", "0", "false", "no")


def report_fault(prog: str, error: BaseException) -> int:
    """Print one line about an internal error (and the traceback when debugging)."""
    if debug_enabled():
        import traceback

        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    hint = "" if debug_enabled() else " (rerun with --debug for the traceback)"
    print(
        f"{prog}: internal error: {type(error).__name__}: {error}{hint}",
        file=sys.stderr,
    )
    return EXIT_INTERNAL
