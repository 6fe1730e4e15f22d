"""Tables of the service (SQLAlchemy 2.0 typed mappings). Migrations live in migrations/.

Byte counts that can exceed 64 bits (estimates of one-hot models reach 2^600 and beyond)
are stored as decimal text, so that they round-trip exactly on every backend.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from app.core.statuses import JOB_STATUSES, MEASUREMENT_QUANTITIES, MEASUREMENT_STATUSES
from estimator.engine import DEFAULT_MODE, MODES

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JOB_KINDS = ("profile", "train")
JOB_PHASES = ("build", "train", "evaluate")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every backend (SQLite keeps no zone: read back as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012
        dict[str, Any]: JSON,
        datetime: UTCDateTime(),
    }


class Spec(Base):
    """A spec, stored once: canonical JSON (defaults filled in) and its SHA-256."""

    __tablename__ = "specs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    spec_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # 'family' or 'model'
    family: Mapped[str | None] = mapped_column(String(32))
    k: Mapped[int | None] = mapped_column(Integer)
    nt: Mapped[int | None] = mapped_column(Integer)
    canonical_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    estimates: Mapped[list[Estimate]] = relationship(back_populates="spec")

    __table_args__ = (
        CheckConstraint(_one_of("kind", ("family", "model")), name="kind"),
        Index("ix_specs_family_k_nt", "family", "k", "nt"),
    )


class Estimate(Base):
    """One spec under one mode and engine version: totals, breakdown and per-layer table."""

    __tablename__ = "estimates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    spec_id: Mapped[int] = mapped_column(ForeignKey("specs.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(16))
    engine_version: Mapped[str] = mapped_column(String(32))
    total_bytes: Mapped[str] = mapped_column(Text)  # exact decimal integer
    breakdown: Mapped[dict[str, Any]]
    result: Mapped[dict[str, Any]]  # Estimate.to_dict(): per-layer table included
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    spec: Mapped[Spec] = relationship(back_populates="estimates")

    __table_args__ = (
        UniqueConstraint("spec_id", "mode", "engine_version", name="uq_estimates_spec_mode_engine"),
        CheckConstraint(_one_of("mode", MODES), name="mode"),
    )


class Device(Base):
    """The GPU catalog (seeded from estimator.devices by the first migration)."""

    __tablename__ = "devices"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[str] = mapped_column(String(128))
    memory_bytes: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[str] = mapped_column(Text, default="")


class Job(Base):
    """A queued profiling or training run, leased by one worker at a time."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    spec_id: Mapped[int] = mapped_column(ForeignKey("specs.id"), index=True)
    mode: Mapped[str] = mapped_column(String(16), default=DEFAULT_MODE)
    device_class: Mapped[str | None] = mapped_column(String(64))
    params: Mapped[dict[str, Any] | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None]
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    result: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # Training progress (kind 'train'): what the run is doing now, written as it goes.
    phase: Mapped[str | None] = mapped_column(String(16))
    step: Mapped[int | None] = mapped_column(Integer)
    total_steps: Mapped[int | None] = mapped_column(Integer)
    loss: Mapped[float | None] = mapped_column(Float)
    ebn0_db: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (
        CheckConstraint(_one_of("kind", JOB_KINDS), name="kind"),
        CheckConstraint(f"phase IS NULL OR {_one_of('phase', JOB_PHASES)}", name="phase"),
        CheckConstraint(_one_of("status", JOB_STATUSES), name="status"),
        CheckConstraint(_one_of("mode", MODES), name="mode"),
        CheckConstraint("attempts >= 0 AND max_attempts >= 1", name="attempts"),
        Index("ix_jobs_status_created_at", "status", "created_at"),
    )


class Measurement(Base):
    """One measured quantity of one estimate's spec on one device: the training peak
    (bytes in use, `measured_peak_bytes`), a stored model size (bytes) or an inference
    latency (microseconds); the last two keep their exact value in `measured_value`, the
    estimate it tests in `estimated_value` and their recipe (storage format, compression,
    runtime options) in `detail`."""

    __tablename__ = "measurements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    estimate_id: Mapped[int] = mapped_column(ForeignKey("estimates.id"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), index=True)
    device: Mapped[str] = mapped_column(String(128))
    framework_versions: Mapped[dict[str, Any]] = mapped_column(default=dict)
    measured_peak_bytes: Mapped[str | None] = mapped_column(Text)  # exact decimal integer
    nvml_peak_bytes: Mapped[int | None] = mapped_column(BigInteger)
    step_time_s: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    quantity: Mapped[str] = mapped_column(
        String(32), default="training_peak", server_default="training_peak", index=True
    )
    measured_value: Mapped[str | None] = mapped_column(Text)  # exact decimal
    # The estimate a model_size measurement tests, same unit (exact decimal); NULL for a
    # training peak (its estimate is the estimate row's total) and for latency (none).
    estimated_value: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any] | None] = mapped_column(default=dict)

    __table_args__ = (
        CheckConstraint(_one_of("status", MEASUREMENT_STATUSES), name="status"),
        CheckConstraint(_one_of("quantity", MEASUREMENT_QUANTITIES), name="quantity"),
    )


class BerResult(Base):
    """One point of a BER curve measured by a training job (its model or a baseline)."""

    __tablename__ = "ber_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    detector: Mapped[str] = mapped_column(String(32))  # 'zf', 'mmse', 'ml' or the family
    ebn0_db: Mapped[float] = mapped_column(Float)
    bits: Mapped[int] = mapped_column(BigInteger)
    bit_errors: Mapped[int] = mapped_column(BigInteger)
    ber: Mapped[float] = mapped_column(Float)
    ci_low: Mapped[float] = mapped_column(Float)
    ci_high: Mapped[float] = mapped_column(Float)
    symbols: Mapped[int] = mapped_column(BigInteger)
    symbol_errors: Mapped[int] = mapped_column(BigInteger)
    messages: Mapped[int] = mapped_column(BigInteger)
    message_errors: Mapped[int] = mapped_column(BigInteger)
    tx_energy: Mapped[float] = mapped_column(Float)  # mean |x|^2 per transmit antenna

    __table_args__ = (
        UniqueConstraint("job_id", "detector", "ebn0_db", name="uq_ber_results_point"),
    )


class JobMetric(Base):
    """One named figure of merit a job measured ('nmse_db', 'rho', 'ber'), at an Eb/N0
    where it depends on one."""

    __tablename__ = "job_metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    ebn0_db: Mapped[float | None] = mapped_column(Float)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RateEvent(Base):
    """One rate-limited event (a job submission) of a key, by the key's SHA-256: the count
    every server process shares (app/services/rate_limits.py)."""

    __tablename__ = "rate_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]

    __table_args__ = (Index("ix_rate_events_key_at", "key_hash", "at"),)
