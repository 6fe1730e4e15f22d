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
    check_migrations: bool = Field(default=True, description="Refuse to start unmigrated.")
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
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'phymem.db').as_posix()}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
