"""Text that reaches an operator's terminal: bounded, and with nothing the terminal would obey.

A signal source, a config file or an exchange can put anything in a string —
an escape sequence that retitles the window or clears the screen, a line
separator, 100,000 characters. Tables, log lines and error messages pass such
text through `printable` (control characters shown as `\\x1b`-style escapes)
and `cut` (long text ends with a marker). JSON output is left exact: the JSON
encoder already escapes control characters.
"""

from __future__ import annotations

import unicodedata
from typing import Any

MARKER = "…"
# Unicode categories a terminal acts on instead of printing: controls (C0, DEL, C1), format
# characters (bidi overrides, zero-width joiners), line and paragraph separators.
_HIDDEN = {"Cc", "Cf", "Zl", "Zp"}
_KEEP = {"\n", "\t"}  # legitimate layout inside multi-line messages


def _escape_char(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with every control or invisible formatting character written as an escape."""
    if text.isascii() and text.isprintable():
        return text  # the common case costs one scan
    keep = _KEEP if keep_newlines else set()
    return "".join(_escape_char(ch) if ch not in keep and unicodedata.category(ch) in _HIDDEN else ch
                   for ch in text)


def cut(text: str, limit: int) -> str:
    """At most `limit` characters; longer text keeps its start and ends with the marker."""
    if len(text) <= limit:
        return text
    return text[: max(limit - len(MARKER), 0)] + MARKER


def shown(value: Any, limit: int = 200) -> str:
    """A bounded, printable `repr` for error messages (never raises, even for a 10,000-digit int)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        digits = int(value.bit_length() * 0.30103) + 1
        return f"{'-' if value < 0 else ''}<an integer of about {digits} digits>"
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__, or a value too large to print
        text = f"<{type(value).__name__}>"
    text = printable(text)
    if len(text) > limit:
        suffix = f" ({len(text)} characters)"
        text = cut(text, max(limit - len(suffix), 8)) + suffix
    return text
