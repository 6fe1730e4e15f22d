"""Service settings: one pydantic-settings class, read from PHYMEM_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PHYMEM_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=Path("data"), description="Where the default SQLite file lives.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default a SQLite file <data_dir>/phymem.db. "
        "PostgreSQL: postgresql+psycopg://user:pass@host/db.",
    )
    api_key: SecretStr | None = Field(default=None, description="Key required to submit jobs.")
    max_body_bytes: int = Field(default=1_048_576, ge=1, description="Largest request body.")
    max_sweep_cells: int = Field(default=100_000, ge=1, description="Largest paper-mode sweep.")
    max_framework_sweep_cells: int = Field(
        default=1_000,
        ge=1,
        description="Largest framework-mode sweep (each cell simulates the allocator, ~5 ms).",
    )
    framework_budget_units: int = Field(
        default=2**25,
        ge=1,
        description="Framework-mode work one request may do, counted by the engine as it "
        "runs in allocator events replayed (one 1024-layer estimate is about 2^24.7, 3.7 s "
        "here; a family about 2^14); past it the work stops with 422.",
    )
    max_buffered_items: int = Field(
        default=100,
        ge=1,
        description="Framework-mode sweep cells or gate specs answered in one JSON body; "
        "past this many the request must ask for an NDJSON stream (else 422).",
    )
    request_time_limit_s: float = Field(
        default=10.0, gt=0, description="Wall-clock cap on one request's computation."
    )
    anonymous_max_specs: int = Field(
        default=100_000,
        ge=0,
        description="Specs an estimate without X-API-Key may add to the database: past "
        "this many stored specs, anonymous estimates are answered but not stored.",
    )
    anonymous_max_spec_bytes: int = Field(
        default=16_384,
        ge=0,
        description="Largest spec (canonical JSON) an anonymous estimate stores.",
    )
    jobs_per_minute: int = Field(
        default=30, ge=1, description="Job submissions per API key per minute (then 429)."
    )
    check_migrations: bool = Field(default=True, description="Refuse to start unmigrated.")
    # Concurrency of one server process, and the database pool sized against it.
    threads: int = Field(
        default=40, ge=1, le=1024, description="Threads per server process for the routes."
    )
    db_pool_size: int | None = Field(
        default=None,
        ge=1,
        description="Pooled database connections per process; default `threads` (a route "
        "holds at most one, and only while it queries, so no thread waits for one).",
    )
    db_max_overflow: int = Field(default=4, ge=0, description="Connections beyond the pool.")
    db_pool_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="Longest wait for a pooled connection; past it the request gets 503.",
    )
    # `phymem worker` (app/worker/): the job dispatcher and its Ray cluster.
    ray_address: str | None = Field(
        default=None,
        description="Ray cluster for `phymem worker` (host:port); default an embedded "
        "single-node Ray started by the worker.",
    )
    worker_lease_s: float = Field(default=60.0, gt=0, description="Job lease, renewed.")
    worker_poll_s: float = Field(default=1.0, gt=0, description="Queue poll interval.")
    worker_concurrency: int = Field(default=2, ge=1, description="Jobs in flight per worker.")
    worker_max_retries: int = Field(
        default=2, ge=0, description="Ray retries of a job whose process died."
    )
    worker_device_class: str | None = Field(
        default=None,
        description="Device class of this machine's GPUs (e.g. a100-80gb), advertised by "
        "the embedded Ray; CPU jobs ('cpu') are always served.",
    )

    @property
    def pool_options(self) -> dict[str, object]:
        """The engine's pool: `threads` connections (plus overflow), a bounded wait."""
        return {
            "pool_size": self.db_pool_size or self.threads,
            "max_overflow": self.db_max_overflow,
            "pool_timeout": self.db_pool_timeout_s,
            "pool_pre_ping": True,
        }

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'phymem.db').as_posix()}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
