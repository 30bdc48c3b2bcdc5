"""Reading at most a limit of bytes without setting the limit aside in memory first.

``handle.read(limit + 1)`` allocates ``limit + 1`` bytes before it reads anything: 64 MiB for
each cache entry of a thousand-image rescan, 256 MiB for podman's image index. Reading in
chunks costs what the file holds, and stops one byte past the limit so callers can tell
"too big" from "exactly the limit".
"""

from __future__ import annotations

from typing import BinaryIO

#: Bytes asked for per read: large enough that big files take few calls.
CHUNK_BYTES = 1 << 20


def read_at_most(handle: BinaryIO, limit: int) -> bytes:
    """Up to ``limit + 1`` bytes of ``handle``: more than ``limit`` means the file is too big."""
    chunks: list[bytes] = []
    total = 0
    while total <= limit:
        chunk = handle.read(min(CHUNK_BYTES, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)
