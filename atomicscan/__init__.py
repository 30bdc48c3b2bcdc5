"""atomicscan: scan container images and containers from the host, read-only and unprivileged."""

from __future__ import annotations

__version__ = "0.1.0"
