"""How every `phymem` command reports bad input: one line on stderr and exit 2."""

from collections.abc import Callable
from typing import NoReturn

import typer

from app.specio import UsageError, validation_message

EXIT_INVALID = 2


def fail(message: str) -> NoReturn:
    typer.echo(f"phymem: error: {message}", err=True)
    raise typer.Exit(EXIT_INVALID)


def run_command(body: Callable[[], None]) -> None:
    """Run a command body, turning bad input into one line on stderr and exit 2."""
    try:
        body()
    except UsageError as error:
        fail(str(error))
    except ValueError as error:
        fail(validation_message(error))
