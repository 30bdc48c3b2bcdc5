"""Allow `python -m atomicscan`."""

from __future__ import annotations

from atomicscan.cli import main

main()
