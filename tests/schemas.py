"""Where the tests find the OASIS SARIF 2.1.0 schema they validate every SARIF document with.

The schema is not ours: it sits in ``../shared/schemas/`` beside the project's root, where
this kind of machine keeps it. ``$ATOMICSCAN_SARIF_SCHEMA`` names another copy.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NAME = "sarif-schema-2.1.0.json"
PLACES = (ROOT.parent / "shared" / "schemas" / NAME, Path("/work/shared/schemas") / NAME)


def sarif_schema_path() -> Path:
    given = os.environ.get("ATOMICSCAN_SARIF_SCHEMA")
    candidates = (Path(given),) if given else PLACES
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"the SARIF 2.1.0 schema is in none of {[str(p) for p in candidates]}; "
                            "set ATOMICSCAN_SARIF_SCHEMA to its path")


@cache
def sarif_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(sarif_schema_path().read_text(encoding="utf-8"))
    return schema
