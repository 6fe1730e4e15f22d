"""How every `phymem` command reports errors: bad input is one line on stderr and exit 2,
a fault of the program one line and exit 3 (`--debug` for the traceback)."""

from collections.abc import Callable
from typing import NoReturn

import typer

from app import exits
from app.specio import UsageError, validation_message

EXIT_INVALID = exits.EXIT_INVALID


def fail(message: str) -> NoReturn:
    typer.echo(f"phymem: error: {message}", err=True)
    raise typer.Exit(EXIT_INVALID)


def run_command(body: Callable[[], None]) -> None:
    """Run a command body: bad input exits 2, anything else unexpected exits 3."""
    from estimator.errors import InvalidInput

    try:
        body()
    except UsageError as error:
        fail(str(error))
    except InvalidInput as error:
        fail(validation_message(error))
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as error:
        raise typer.Exit(exits.report_fault("phymem", error)) from None
