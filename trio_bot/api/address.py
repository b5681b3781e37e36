"""Where a running instance's operator API listens, recorded next to its database.

The default address (127.0.0.1:8080) moves on to the next free port when busy, so
the client commands (`trio-bot status`, `pause`, `resume`, `close`) cannot assume it.
`trio-bot run` writes `<database>.<account hash>.api.json` (SQLite: beside the file;
PostgreSQL: in the working directory, named after the database) with the URL and its
process id once the server accepts connections, and removes it at exit. A file whose
process is gone (the instance was killed) is ignored. The file holds no token.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
from pathlib import Path
from urllib.parse import urlsplit

from adapters.db_url import parse_db_url
from engine.errors import ConfigError
from engine.text import cut


def _stem(db_url: str) -> str | None:
    parsed = parse_db_url(db_url)
    if parsed.path is not None:
        return None if parsed.path in ("", ":memory:") else parsed.path
    name = urlsplit(db_url).path.strip("/") or "trio-bot"
    return cut(name.replace("/", "_"), 100)


def address_path(db_url: str, account: str) -> Path | None:
    """The address file of `account`'s instance on the database at `db_url` (None: in-memory)."""
    stem = _stem(db_url)
    if stem is None:
        return None
    return Path(f"{stem}.{hashlib.blake2b(account.encode(), digest_size=4).hexdigest()}.api.json")


def record_address(path: Path | None, url: str) -> None:
    """Written atomically; a failure (read-only directory) only costs the client commands their
    default, so it is not fatal: `--url` still works."""
    if path is None:
        return
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(OSError):
        tmp.write_text(json.dumps({"url": url, "pid": os.getpid()}), encoding="utf-8")
        tmp.replace(path)


def remove_address(path: Path | None) -> None:
    if path is None:
        return
    with contextlib.suppress(OSError):
        if _read(path)[1] == os.getpid():  # only this process's own record
            path.unlink()


def _read(path: Path) -> tuple[str | None, int | None]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    url, pid = data.get("url"), data.get("pid")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        url = None
    return url, pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    return True


def running_url(db_url: str) -> str | None:
    """The API URL of the instance running on `db_url`, if one recorded it and is still alive.

    Several instances (several accounts on one database): the choice is the operator's."""
    stem = _stem(db_url)
    if stem is None:
        return None
    found = []
    for path in sorted(Path(stem).parent.glob(glob.escape(Path(stem).name) + ".*.api.json")):
        url, pid = _read(path)
        if url is not None and pid is not None and _alive(pid):
            found.append(url)
    if len(found) > 1:
        raise ConfigError("--url", None, f"one of the running instances' addresses ({', '.join(found)}): "
                          "several instances trade accounts on this database")
    return found[0] if found else None
