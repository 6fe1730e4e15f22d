"""Quantities: what a measurement measured (training peak, model size, latency) with its
exact value, the estimate it tests and its recipe; a table of a job's named metrics
(NMSE, rho, BER).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("measurements", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "quantity",
                sa.String(length=32),
                server_default="training_peak",
                nullable=False,
            )
        )
        batch_op.add_column(sa.Column("measured_value", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("estimated_value", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("detail", sa.JSON(), nullable=True))
        batch_op.create_check_constraint(
            "quantity", "quantity IN ('training_peak', 'model_size', 'latency')"
        )
        batch_op.create_index(batch_op.f("ix_measurements_quantity"), ["quantity"], unique=False)

    op.create_table(
        "job_metrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("ebn0_db", sa.Float(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_job_metrics_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_metrics")),
    )
    with op.batch_alter_table("job_metrics", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_job_metrics_job_id"), ["job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("job_metrics", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_metrics_job_id"))
    op.drop_table("job_metrics")
    with op.batch_alter_table("measurements", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_measurements_quantity"))
        batch_op.drop_constraint("quantity", type_="check")
        batch_op.drop_column("detail")
        batch_op.drop_column("estimated_value")
        batch_op.drop_column("measured_value")
        batch_op.drop_column("quantity")
