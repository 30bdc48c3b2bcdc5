"""Which history database a run uses, and its URL as it may be shown: never with a password."""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path

from atomicscan import rootless

#: The environment variable that names the history database when ``--db`` is not given.
ENV = "ATOMICSCAN_DB"
#: A file whose first line names the history database, when neither ``--db`` nor $ATOMICSCAN_DB.
CONFIG_FILE = Path("/etc/atomicscan/db-url")
#: The embedded default: one SQLite file, readable by root only.
DEFAULT_URL = "sqlite:////var/lib/atomicscan/history.db"

_QUERY_PASSWORD = re.compile(r"(?i)([?&;]password=)[^&;#]*")


def resolve_url(given: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The history database's URL: ``--db``, else $ATOMICSCAN_DB, else the first line of
    /etc/atomicscan/db-url, else the SQLite file under /var/lib/atomicscan; for a user,
    ``$XDG_DATA_HOME/atomicscan/history.db`` after the first two."""
    if given:
        return given
    env = os.environ if environ is None else environ
    if env.get(ENV, "").strip():
        return env[ENV].strip()
    if rootless.rootless():
        # The host's configuration is root's (and root-only): a user's runs go to their own.
        return f"sqlite:///{rootless.data_home() / 'history.db'}"
    try:
        lines = CONFIG_FILE.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        lines = []
    if lines and lines[0].strip():
        return lines[0].strip()
    return DEFAULT_URL


def _userinfo(url: str) -> tuple[str, str, str] | None:
    """``(before, password, after)`` when ``url`` holds ``scheme://user:password@...``.

    The password runs to the last ``@``: one written with an unescaped ``@`` or ``/`` is
    hidden whole rather than cut where a stricter parser would stop.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    end = rest.rfind("@")
    if end == -1:
        return None
    user, colon, password = rest[:end].partition(":")
    if not colon or "/" in user:
        return None
    return f"{scheme}://{user}:", password, rest[end:]


def redacted(url: str) -> str:
    """``url`` with its password (in the user part or a ``password=`` parameter) as ***."""
    parts = _userinfo(url)
    if parts is not None:
        url = f"{parts[0]}***{parts[2]}"
    return _QUERY_PASSWORD.sub(r"\1***", url)


def ambiguous_password(url: str) -> bool:
    """The password holds an unescaped ``@``: parsers would cut it there, and show its
    tail as the host name in their errors."""
    parts = _userinfo(url)
    return parts is not None and "@" in parts[1]


def secrets(url: str) -> set[str]:
    """Every form the URL's password could take in a message (as written and decoded)."""
    found: set[str] = set()
    parts = _userinfo(url)
    if parts is not None:
        found.add(parts[1])
    found.update(match.group(0).partition("=")[2] for match in _QUERY_PASSWORD.finditer(url))
    found |= {urllib.parse.unquote(secret) for secret in found}
    found |= {urllib.parse.unquote_plus(secret) for secret in found}
    return {secret for secret in found if secret}


def scrub(text: str, urls: Iterable[str]) -> str:
    """``text`` with every URL and every password of ``urls`` shown redacted."""
    for url in urls:
        text = text.replace(url, redacted(url))
        # The longest first, so a password that contains another is hidden whole.
        for secret in sorted(secrets(url), key=len, reverse=True):
            text = text.replace(secret, "***")
    return text
