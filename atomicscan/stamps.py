"""The run's time stamps: each format is written, and recognised, in this one place."""

from __future__ import annotations

import datetime as dt
import re

#: A results directory per run is named by its start, to the microsecond (sorts by time).
_RESULTS_DIR_FORMAT = "%Y-%m-%d-%H-%M-%S-%f"
_RESULTS_DIR_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-\d{6}$")
#: A run ID starts with its start time to the second; random hex makes it unique.
_RUN_ID_FORMAT = "%Y%m%d%H%M%S"
RUN_ID_PATTERN = re.compile(r"^\d{14}-[0-9a-f]{8}$")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso_stamp(moment: dt.datetime | None = None) -> str:
    """When a result started or finished: ISO 8601 in UTC, milliseconds, a ``Z``."""
    moment = moment or utc_now()
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def results_dir_name(moment: dt.datetime | None = None) -> str:
    """The name of one run's results directory under its scanner's folder."""
    return (moment or utc_now()).strftime(_RESULTS_DIR_FORMAT)


def is_results_dir_name(name: str) -> bool:
    """Whether ``name`` is one :func:`results_dir_name` gives (retention touches no other)."""
    return bool(_RESULTS_DIR_NAME.match(name))


def run_id_stamp(moment: dt.datetime | None = None) -> str:
    """The time part of a run ID (see :func:`atomicscan.state.new_run_id`)."""
    return (moment or utc_now()).strftime(_RUN_ID_FORMAT)
