"""Versioned SQL migrations, one folder per dialect: `NNNN_name.sql`, applied in order.

Both dialects carry the same logical schema; a version number means the same
change in each. Applied versions are recorded in a `schema_version` table.
"""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def load(dialect: str) -> list[tuple[int, str]]:
    """(version, SQL text) for `dialect` ("sqlite" or "postgresql"), oldest first."""
    folder = resources.files(__package__) / dialect
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _ in found]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"{dialect} migrations must be numbered 1..n without gaps, found {versions}")
    return found


def statements(sql: str) -> list[str]:
    """Split a migration into statements (for drivers that run one at a time).

    Migrations keep to plain DDL: no semicolons inside strings or bodies.
    """
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
