"""Training jobs: progress columns on jobs, and a table of BER results.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 04:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("phase", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("step", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("total_steps", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("loss", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("ebn0_db", sa.Float(), nullable=True))
        batch_op.create_check_constraint(
            "phase", "phase IS NULL OR phase IN ('build', 'train', 'evaluate')"
        )

    op.create_table(
        "ber_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("detector", sa.String(length=32), nullable=False),
        sa.Column("ebn0_db", sa.Float(), nullable=False),
        sa.Column("bits", sa.BigInteger(), nullable=False),
        sa.Column("bit_errors", sa.BigInteger(), nullable=False),
        sa.Column("ber", sa.Float(), nullable=False),
        sa.Column("ci_low", sa.Float(), nullable=False),
        sa.Column("ci_high", sa.Float(), nullable=False),
        sa.Column("symbols", sa.BigInteger(), nullable=False),
        sa.Column("symbol_errors", sa.BigInteger(), nullable=False),
        sa.Column("messages", sa.BigInteger(), nullable=False),
        sa.Column("message_errors", sa.BigInteger(), nullable=False),
        sa.Column("tx_energy", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_ber_results_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ber_results")),
        sa.UniqueConstraint("job_id", "detector", "ebn0_db", name="uq_ber_results_point"),
    )
    with op.batch_alter_table("ber_results", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ber_results_job_id"), ["job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ber_results", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ber_results_job_id"))
    op.drop_table("ber_results")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint("phase", type_="check")
        batch_op.drop_column("ebn0_db")
        batch_op.drop_column("loss")
        batch_op.drop_column("total_steps")
        batch_op.drop_column("step")
        batch_op.drop_column("phase")
