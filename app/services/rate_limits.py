"""Per-key rate limits counted in the database, so that every server process
(`phymem serve --workers N`) and every host on the same database shares one count."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from app.db.models import RateEvent, utcnow
from app.db.session import begin_write
from estimator.errors import RateLimited

WINDOW = timedelta(seconds=60)


def hit(session: Session, key_hash: str, per_minute: int) -> None:
    """Count one job submission of `key_hash`; raise RateLimited past `per_minute` in any
    60 s window. One writer at a time per key (PostgreSQL: an advisory lock on the key;
    SQLite: BEGIN IMMEDIATE), so concurrent processes cannot both take the last slot."""
    begin_write(session)
    if session.get_bind().dialect.name == "postgresql":
        lock = int(key_hash[:15], 16)  # fits a bigint
        session.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": lock})
    now = utcnow()
    session.execute(delete(RateEvent).where(RateEvent.at <= now - WINDOW))
    count, oldest = session.execute(
        select(func.count(), func.min(RateEvent.at)).where(RateEvent.key_hash == key_hash)
    ).one()
    if count >= per_minute:
        session.commit()
        retry = max(1, int((WINDOW - (now - oldest)).total_seconds()) + 1)
        raise RateLimited(
            f"more than {per_minute} job submissions in a minute with this key "
            f"(PHYMEM_JOBS_PER_MINUTE); retry in {retry} s",
            retry,
        )
    session.add(RateEvent(key_hash=key_hash, at=now))
    session.commit()
