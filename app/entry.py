"""The `phymem` executable: the gate takes a fast path, everything else the typer app."""

from __future__ import annotations

import sys


def main() -> None:
    asks_help = {"--help", "-h"} & set(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "gate" and not asks_help:
        from app.gate_cli import main as gate_main

        sys.exit(gate_main(sys.argv[2:]))
    from app.cli import app

    app()
