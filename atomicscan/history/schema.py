"""The history's tables (SQLAlchemy Core), one schema for SQLite and PostgreSQL.

A run is recorded once (``runs`` is unique per host and run ID, so importing a report twice
adds nothing), with one ``targets`` row per target it scanned and that target's
``findings``. Package lists are stored once per distinct list (``package_sets``, keyed by
the digest of the sorted list): every scan of one image ID shares one set, however often it
is scanned. Free text from images and scanners goes into ``Text`` columns, never into a
unique index: uniqueness is on digests (``packages.key``, ``package_sets.digest``). Indexed
text (``packages.name``, ``targets.target_id``, ``findings.finding_id``) is cut at
:data:`MAX_INDEXED_CHARS` when recorded, so a hostile 10,000-character package name can't
break PostgreSQL's index entry limit.

Times are stored in UTC (``DateTime(timezone=True)``; SQLite keeps them as ISO text, which
sorts as time does). Alembic migrations (``atomicscan/history/migrations``) create and
upgrade these tables; the code reads and writes through this module.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

#: The longest text kept in an indexed column (PostgreSQL's btree entries stop near 2,700
#: bytes; 512 characters of UTF-8 stay under it).
MAX_INDEXED_CHARS = 512

metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
})

hosts = Table(
    "hosts", metadata,
    Column("id", Integer, primary_key=True),
    Column("machine_id", String(64), nullable=False),  # /etc/machine-id, "" if none
    Column("hostname", String(255), nullable=False),
    UniqueConstraint("machine_id", "hostname"),
)

runs = Table(
    "runs", metadata,
    Column("id", Integer, primary_key=True),
    Column("host_id", Integer, ForeignKey("hosts.id", ondelete="CASCADE"), nullable=False),
    Column("run_id", String(128), nullable=False),  # the report's run_id
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("scanner", String(64), nullable=False),
    Column("scan_type", String(64), nullable=False),
    Column("scanner_args", Text, nullable=False),  # JSON object
    Column("atomicscan_version", String(64), nullable=False),
    Column("results_dir", Text, nullable=True),
    Column("targets", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    UniqueConstraint("host_id", "run_id"),
    Index(None, "started_at"),
)

packages = Table(
    "packages", metadata,
    Column("id", Integer, primary_key=True),
    Column("key", String(64), nullable=False, unique=True),  # sha256 of the fields below
    Column("type", String(32), nullable=False),  # deb, rpm, apk, ...
    Column("name", Text, nullable=False),
    Column("version", Text, nullable=False),
    Column("architecture", Text, nullable=False),
    Column("purl", Text, nullable=False),
    Column("source", Text, nullable=True),
    Index(None, "name"),
)

package_sets = Table(
    "package_sets", metadata,
    Column("id", Integer, primary_key=True),
    Column("digest", String(64), nullable=False, unique=True),  # sha256 of the sorted keys
    Column("package_count", Integer, nullable=False),
)

package_set_members = Table(
    "package_set_members", metadata,
    Column("set_id", Integer, ForeignKey("package_sets.id", ondelete="CASCADE"),
           primary_key=True),
    Column("package_id", Integer, ForeignKey("packages.id", ondelete="CASCADE"),
           primary_key=True),
    Index(None, "package_id"),
)

targets = Table(
    "targets", metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),  # order in the report
    Column("ref", Text, nullable=False),  # as typed on the command line
    Column("target_type", String(16), nullable=False),  # image, container, rootfs
    Column("target_id", Text, nullable=False),  # image/container ID, or the rootfs path
    Column("runtime", String(64), nullable=True),
    Column("names", Text, nullable=False),  # JSON list: tags, container names
    Column("digests", Text, nullable=False),  # JSON list
    Column("labels", Text, nullable=False),  # JSON object
    Column("image_id", Text, nullable=True),  # a container's image
    Column("state", String(32), nullable=True),  # a container's state
    Column("successful", Boolean, nullable=False),
    Column("error", Text, nullable=True),
    Column("cached", Boolean, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("scanner_image_id", Text, nullable=True),
    Column("os_id", Text, nullable=True),
    Column("os_version_id", Text, nullable=True),
    Column("os_name", Text, nullable=True),  # PRETTY_NAME
    Column("package_set_id", Integer, ForeignKey("package_sets.id"), nullable=True),
    Index(None, "run_id"),
    Index(None, "target_id"),
    Index(None, "package_set_id"),
)

findings = Table(
    "findings", metadata,
    Column("id", Integer, primary_key=True),
    Column("target_row_id", Integer, ForeignKey("targets.id", ondelete="CASCADE"),
           nullable=False),
    Column("scanner", String(64), nullable=False),
    Column("finding_id", Text, nullable=False),  # a CVE, a rule ID
    Column("severity", String(16), nullable=False),  # the common scale
    Column("title", Text, nullable=False),
    Column("package", Text, nullable=True),
    Column("path", Text, nullable=True),
    Column("suppressed", Boolean, nullable=False),
    Column("suppression_reason", Text, nullable=True),
    Column("fingerprint", String(64), nullable=False),  # stable across runs
    Index(None, "target_row_id"),
    Index(None, "finding_id"),
    Index(None, "fingerprint"),
)
