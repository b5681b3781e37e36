"""Reading an operator's text file (config, scenario, signals, secret): one way, bounded, UTF-8.

A file that cannot be read, is not UTF-8 or is implausibly large becomes one
`ConfigError` naming the file and, for bad bytes, the line and column — never a
`UnicodeDecodeError` traceback, never a gigabyte read into memory.
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import ConfigError

MAX_BYTES = 64 * 1024 * 1024  # far above any real config, scenario or day of signals


def read_text(path: str | Path, *, key: str, where: str, what: str = "file", limit: int = MAX_BYTES) -> str:
    """The file's text; `key`/`where` name it in the error (e.g. "--signals", "signals")."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise ConfigError(key, str(path), f"a readable {what} ({exc.strerror or type(exc).__name__})",
                          where=where) from None
    except ValueError as exc:  # e.g. a NUL byte in the path
        raise ConfigError(key, str(path), f"a readable {what} ({exc})", where=where) from None
    if len(data) > limit:
        raise ConfigError(key, str(path), f"a {what} of at most {limit // (1024 * 1024)} MiB", where=where)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(key, str(path), f"UTF-8 text (byte 0x{data[exc.start]:02x} at line {line}, "
                          f"column {column} is not UTF-8)", where=where) from None
