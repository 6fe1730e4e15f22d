"""`phymem serve` and `phymem db upgrade|downgrade|current`.

Only typer at module level: FastAPI, SQLAlchemy and Alembic are imported inside the
commands, so that the rest of the CLI starts fast.
"""

from __future__ import annotations

import typer


def _url() -> str:
    from app.core.config import get_settings

    return get_settings().sqlalchemy_url


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _report(url: str) -> None:
    from app.db import migrate

    typer.echo(f"{_shown(url)}: at {', '.join(sorted(migrate.current(url))) or 'base'}")


def _prune_stale_estimates(url: str) -> int:
    """Estimates of another engine version are never served again; measured ones are kept."""
    from sqlalchemy import inspect

    from app.db.session import make_engine, make_sessionmaker
    from app.services.estimates import prune_stale

    engine = make_engine(url)
    try:
        if not inspect(engine).has_table("estimates"):
            return 0
        with make_sessionmaker(engine)() as session:
            return prune_stale(session)
    finally:
        engine.dispose()


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="TCP port."),
    workers: int = typer.Option(1, min=1, help="Worker processes."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
    access_log: bool = typer.Option(True, help="Log every request."),
    with_worker: bool = typer.Option(
        False, "--with-worker", help="Also run one `phymem worker` (jobs) beside the API."
    ),
) -> None:
    """Serve the HTTP API (uvicorn). Run `phymem db upgrade` first."""
    import uvicorn

    from app.db.migrate import UnmigratedDatabase
    from app.main import create_app

    try:
        application = create_app()
    except UnmigratedDatabase as error:
        typer.secho(f"phymem serve: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    if with_worker:
        from app.cli_worker import start_worker_beside

        start_worker_beside()  # stopped when this process exits
    if workers == 1:
        uvicorn.run(application, host=host, port=port, log_level=log_level, access_log=access_log)
        return
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=access_log,
    )


def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Migrate the database up to REVISION (default: the latest)."""
    from app.db import migrate

    url = _url()
    migrate.upgrade(url, revision)
    _report(url)
    pruned = _prune_stale_estimates(url)
    if pruned:
        typer.echo(f"removed {pruned} stored estimate(s) of older engine versions")


def downgrade(
    revision: str = typer.Argument(
        ..., help="Target revision: one below the current ('0001', '-1'), or 'base' (drop all)."
    ),
    yes: bool = typer.Option(False, "--yes", help="Do not ask: drop the data."),
) -> None:
    """Migrate the database down to REVISION, dropping the tables and columns of every
    revision above it; asks first (or needs --yes when not on a terminal)."""
    import sys

    from app.db import migrate

    url = _url()
    try:
        undone = migrate.downgrade_steps(url, revision)
    except migrate.MigrationError as error:
        typer.echo(f"phymem db downgrade: {error}", err=True)
        raise typer.Exit(2) from None
    what = (
        f"{_shown(url)}: undo revision(s) {', '.join(undone)}, dropping their tables and "
        "columns with the data in them"
    )
    if not yes:
        if not sys.stdin.isatty():
            typer.echo(
                f"phymem db downgrade: would {what[0].lower()}{what[1:]}; pass --yes to go ahead",
                err=True,
            )
            raise typer.Exit(2)
        if not typer.confirm(f"{what}. Go ahead?", default=False):
            raise typer.Exit(1)
    migrate.downgrade(url, revision)
    _report(url)


def current() -> None:
    """Show the database's revision and the latest one."""
    from app.db import migrate

    url = _url()
    have = ", ".join(sorted(migrate.current(url))) or "base (empty)"
    head = ", ".join(sorted(migrate.head_revisions()))
    state = "up to date" if have == head else "run `phymem db upgrade`"
    typer.echo(f"{_shown(url)}: at {have}; head {head} ({state})")


def register(app: typer.Typer) -> None:
    app.command()(serve)
    db = typer.Typer(
        help="Database schema migrations (Alembic). The URL is PHYMEM_DATABASE_URL.",
        no_args_is_help=True,
    )
    for command in (upgrade, downgrade, current):
        db.command()(command)
    app.add_typer(db, name="db")
