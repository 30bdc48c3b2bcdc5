"""atomicscan-inventory-extra: a scanner plugin reporting libc, language runtimes and labels."""

from __future__ import annotations

__version__ = "0.1.0"
