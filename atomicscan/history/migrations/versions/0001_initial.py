"""The first schema: hosts, runs, packages and their sets, targets, findings.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _stamp(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "hosts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("machine_id", sa.String(64), nullable=False),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_hosts"),
        sa.UniqueConstraint("machine_id", "hostname", name="uq_hosts_machine_id_hostname"),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(128), nullable=False),
        _stamp("started_at"),
        _stamp("finished_at"),
        _stamp("recorded_at"),
        sa.Column("scanner", sa.String(64), nullable=False),
        sa.Column("scan_type", sa.String(64), nullable=False),
        sa.Column("scanner_args", sa.Text(), nullable=False),
        sa.Column("atomicscan_version", sa.String(64), nullable=False),
        sa.Column("results_dir", sa.Text(), nullable=True),
        sa.Column("targets", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.ForeignKeyConstraint(["host_id"], ["hosts.id"], name="fk_runs_host_id",
                                ondelete="CASCADE"),
        sa.UniqueConstraint("host_id", "run_id", name="uq_runs_host_id_run_id"),
    )
    op.create_index("ix_runs_started_at", "runs", ["started_at"])
    op.create_table(
        "packages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("architecture", sa.Text(), nullable=False),
        sa.Column("purl", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_packages"),
        sa.UniqueConstraint("key", name="uq_packages_key"),
    )
    op.create_index("ix_packages_name", "packages", ["name"])
    op.create_table(
        "package_sets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("package_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_package_sets"),
        sa.UniqueConstraint("digest", name="uq_package_sets_digest"),
    )
    op.create_table(
        "package_set_members",
        sa.Column("set_id", sa.Integer(), nullable=False),
        sa.Column("package_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("set_id", "package_id", name="pk_package_set_members"),
        sa.ForeignKeyConstraint(["set_id"], ["package_sets.id"],
                                name="fk_package_set_members_set_id", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["package_id"], ["packages.id"],
                                name="fk_package_set_members_package_id", ondelete="CASCADE"),
    )
    op.create_index("ix_package_set_members_package_id", "package_set_members", ["package_id"])
    op.create_table(
        "targets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("ref", sa.Text(), nullable=False),
        sa.Column("target_type", sa.String(16), nullable=False),
        sa.Column("target_id", sa.Text(), nullable=False),
        sa.Column("runtime", sa.String(64), nullable=True),
        sa.Column("names", sa.Text(), nullable=False),
        sa.Column("digests", sa.Text(), nullable=False),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.Column("image_id", sa.Text(), nullable=True),
        sa.Column("state", sa.String(32), nullable=True),
        sa.Column("successful", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cached", sa.Boolean(), nullable=False),
        _stamp("started_at"),
        _stamp("finished_at"),
        sa.Column("scanner_image_id", sa.Text(), nullable=True),
        sa.Column("os_id", sa.Text(), nullable=True),
        sa.Column("os_version_id", sa.Text(), nullable=True),
        sa.Column("os_name", sa.Text(), nullable=True),
        sa.Column("package_set_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_targets"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_targets_run_id",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["package_set_id"], ["package_sets.id"],
                                name="fk_targets_package_set_id"),
    )
    op.create_index("ix_targets_run_id", "targets", ["run_id"])
    op.create_index("ix_targets_target_id", "targets", ["target_id"])
    op.create_index("ix_targets_package_set_id", "targets", ["package_set_id"])
    op.create_table(
        "findings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("target_row_id", sa.Integer(), nullable=False),
        sa.Column("scanner", sa.String(64), nullable=False),
        sa.Column("finding_id", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("package", sa.Text(), nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("suppressed", sa.Boolean(), nullable=False),
        sa.Column("suppression_reason", sa.Text(), nullable=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_findings"),
        sa.ForeignKeyConstraint(["target_row_id"], ["targets.id"],
                                name="fk_findings_target_row_id", ondelete="CASCADE"),
    )
    op.create_index("ix_findings_target_row_id", "findings", ["target_row_id"])
    op.create_index("ix_findings_finding_id", "findings", ["finding_id"])
    op.create_index("ix_findings_fingerprint", "findings", ["fingerprint"])


def downgrade() -> None:
    for table in ("findings", "targets", "package_set_members", "package_sets", "packages",
                  "runs", "hosts"):
        op.drop_table(table)
