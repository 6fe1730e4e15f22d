"""Alembic migrations of the service database (see app/db/migrate.py)."""
