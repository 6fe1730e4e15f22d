"""Initial schema: specs, estimates, devices (seeded), jobs, measurements.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 01:53:52.951415
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from estimator.units import MIB

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The catalog of estimator/devices.py as of this revision (a migration must not change
# with later code; tests/test_migrations.py checks that the two still agree).
DEVICES = [
    ("v100-16gb", "NVIDIA V100 16GB", 16_384 * MIB),
    ("v100-32gb", "NVIDIA V100 32GB", 32_768 * MIB),
    ("a100-40gb", "NVIDIA A100 40GB", 40_960 * MIB),
    ("a100-80gb", "NVIDIA A100 80GB", 81_920 * MIB),
    ("h100-80gb", "NVIDIA H100 80GB", 81_559 * MIB),
    ("h200-141gb", "NVIDIA H200 141GB", 143_771 * MIB),
    ("l4-24gb", "NVIDIA L4", 23_034 * MIB),
    ("rtx-3090-24gb", "NVIDIA GeForce RTX 3090", 24_576 * MIB),
    ("rtx-4090-24gb", "NVIDIA GeForce RTX 4090", 24_564 * MIB),
]


def upgrade() -> None:
    _create_devices()
    _create_specs()
    _create_estimates()
    _create_jobs()
    _create_measurements()


def _create_devices() -> None:
    devices = op.create_table(
        "devices",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=128), nullable=False),
        sa.Column("memory_bytes", sa.BigInteger(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_devices")),
    )
    op.bulk_insert(
        devices,
        [
            {"name": name, "label": label, "memory_bytes": size, "note": ""}
            for name, label, size in DEVICES
        ],
    )


def _create_specs() -> None:
    op.create_table(
        "specs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("spec_hash", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("family", sa.String(length=32), nullable=True),
        sa.Column("k", sa.Integer(), nullable=True),
        sa.Column("nt", sa.Integer(), nullable=True),
        sa.Column("canonical_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('family', 'model')", name=op.f("ck_specs_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_specs")),
        sa.UniqueConstraint("spec_hash", name=op.f("uq_specs_spec_hash")),
    )
    with op.batch_alter_table("specs", schema=None) as batch_op:
        batch_op.create_index("ix_specs_family_k_nt", ["family", "k", "nt"], unique=False)


def _create_estimates() -> None:
    op.create_table(
        "estimates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("spec_id", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("engine_version", sa.String(length=32), nullable=False),
        sa.Column("total_bytes", sa.Text(), nullable=False),
        sa.Column("breakdown", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("mode IN ('paper', 'framework')", name=op.f("ck_estimates_mode")),
        sa.ForeignKeyConstraint(
            ["spec_id"], ["specs.id"], name=op.f("fk_estimates_spec_id_specs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_estimates")),
        sa.UniqueConstraint(
            "spec_id", "mode", "engine_version", name="uq_estimates_spec_mode_engine"
        ),
    )


def _create_jobs() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("spec_id", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("device_class", sa.String(length=64), nullable=True),
        sa.Column("params", sa.JSON(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('profile', 'train')", name=op.f("ck_jobs_kind")),
        sa.CheckConstraint("mode IN ('paper', 'framework')", name=op.f("ck_jobs_mode")),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'oom', 'cancelled')",
            name=op.f("ck_jobs_status"),
        ),
        sa.CheckConstraint("attempts >= 0 AND max_attempts >= 1", name=op.f("ck_jobs_attempts")),
        sa.ForeignKeyConstraint(["spec_id"], ["specs.id"], name=op.f("fk_jobs_spec_id_specs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobs_spec_id"), ["spec_id"], unique=False)
        batch_op.create_index("ix_jobs_status_created_at", ["status", "created_at"], unique=False)


def _create_measurements() -> None:
    op.create_table(
        "measurements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("estimate_id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("device", sa.String(length=128), nullable=False),
        sa.Column("framework_versions", sa.JSON(), nullable=False),
        sa.Column("measured_peak_bytes", sa.Text(), nullable=True),
        sa.Column("nvml_peak_bytes", sa.BigInteger(), nullable=True),
        sa.Column("step_time_s", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('ok', 'oom', 'failed')", name=op.f("ck_measurements_status")
        ),
        sa.ForeignKeyConstraint(
            ["estimate_id"], ["estimates.id"], name=op.f("fk_measurements_estimate_id_estimates")
        ),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_measurements_job_id_jobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_measurements")),
    )
    with op.batch_alter_table("measurements", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_measurements_estimate_id"), ["estimate_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_measurements_job_id"), ["job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("measurements", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_measurements_job_id"))
        batch_op.drop_index(batch_op.f("ix_measurements_estimate_id"))

    op.drop_table("measurements")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_status_created_at")
        batch_op.drop_index(batch_op.f("ix_jobs_spec_id"))

    op.drop_table("jobs")
    op.drop_table("estimates")
    with op.batch_alter_table("specs", schema=None) as batch_op:
        batch_op.drop_index("ix_specs_family_k_nt")

    op.drop_table("specs")
    op.drop_table("devices")
