"""What a trio-bot database must contain, checked against what it does contain.

`schema_version` records which migrations ran; it cannot notice a table
dropped or altered by hand afterwards. Every table and column the stores read
and write (the row mappings in `adapters.records`, plus the `seq` columns the
queries order by) is compared with the database's catalogue, so `db migrate`
never reports a schema it does not have and a read-only command names the
missing table instead of failing on its first query.
"""

from __future__ import annotations

from collections.abc import Mapping

from adapters.records import EVENTS, HANDLED, ORDERS, OUTCOMES, POSITIONS, TRAILING, WAVES

EXPECTED: dict[str, frozenset[str]] = {
    **{t.name: frozenset(t.columns) for t in (POSITIONS, ORDERS, TRAILING, WAVES, OUTCOMES, EVENTS, HANDLED)},
    "schema_version": frozenset({"version"}),
}
EXPECTED[WAVES.name] |= {"seq"}
EXPECTED[EVENTS.name] |= {"seq"}


def problems(found: Mapping[str, set[str] | frozenset[str]]) -> list[str]:
    """What is missing, e.g. ["table 'waves' is missing", "table 'orders' lacks column 'status'"]."""
    out: list[str] = []
    for table, columns in EXPECTED.items():
        if table not in found:
            out.append(f"table {table!r} is missing")
            continue
        out += [f"table {table!r} lacks column {c!r}" for c in sorted(columns - set(found[table]))]
    return out


def describe(path: str, version: int, missing: list[str]) -> str:
    """The one-line message for a database whose recorded version does not match its tables."""
    shown = "; ".join(missing[:3]) + (f" (and {len(missing) - 3} more)" if len(missing) > 3 else "")
    return (f"{path} records schema version {version} but {shown}: it was changed outside trio-bot; "
            "restore it from a backup or point --db at another database")
