"""Alembic underneath `phymem db ...`, the start-up check and the tests."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

import migrations
from app.db.session import make_engine

MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent
UPGRADE_HINT = "run `phymem db upgrade` (or `alembic upgrade head`) first"


class UnmigratedDatabase(RuntimeError):
    """The database schema is not at the migrations' head."""


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


class MigrationError(ValueError):
    """A migration that cannot run as asked (an unknown target, nothing to undo)."""


def downgrade_steps(url: str, revision: str) -> list[str]:
    """The revisions a downgrade to `revision` would undo, newest first (each drops data).

    Raises MigrationError, in one line, for a target that is not below the current one.
    """
    from alembic.script.revision import RevisionError
    from alembic.util.exc import CommandError

    have = current(url)
    if not have:
        raise MigrationError("the database is at base (empty): there is nothing to downgrade")
    scripts = ScriptDirectory(str(MIGRATIONS_DIR))
    try:
        steps = [
            script.revision
            for script in scripts.iterate_revisions(tuple(sorted(have)), revision)
            if script is not None
        ]
        if revision not in ("base", *steps) and not revision.startswith("-"):
            scripts.get_revision(revision)  # raises for an unknown revision
    except (CommandError, RevisionError) as error:
        raise MigrationError(str(error).splitlines()[0]) from None
    target = None if revision == "base" else revision
    undone = [step for step in steps if step != target]
    if not undone:
        raise MigrationError(
            f"the database is at {', '.join(sorted(have))}: {revision!r} is not below it"
        )
    return undone


def head_revisions() -> set[str]:
    return set(ScriptDirectory(str(MIGRATIONS_DIR)).get_heads())


def current_revisions(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


def current(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return current_revisions(engine)
    finally:
        engine.dispose()


def ensure_migrated(engine: Engine) -> None:
    """Raise UnmigratedDatabase, naming the fix, unless the schema is at head."""
    have, want = current_revisions(engine), head_revisions()
    if have != want:
        shown = ", ".join(sorted(have)) or "none (empty database)"
        raise UnmigratedDatabase(
            f"database {engine.url.render_as_string(hide_password=True)} is at revision "
            f"{shown}, not {', '.join(sorted(want))}: {UPGRADE_HINT}"
        )
