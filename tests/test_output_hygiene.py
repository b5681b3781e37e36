"""What reaches an operator's terminal is escaped and bounded; JSON stays exact."""

from __future__ import annotations

import logging

from engine.errors import ConfigError
from engine.text import cut, printable, shown
from trio_bot.tables import CELL_MAX, PrintableFormatter, render_table

NASTY = "\x1b]0;pwned\x07\x1b[2J\u202etxt.exe\u2028\x9b"


def test_printable_escapes_every_control_and_invisible_formatting_character():
    assert printable(NASTY) == "\\x1b]0;pwned\\x07\\x1b[2J\\u202etxt.exe\\u2028\\x9b"
    assert printable("BTCUSDT — ok ✓") == "BTCUSDT — ok ✓"  # ordinary Unicode is left alone
    assert printable("a\nb", keep_newlines=True) == "a\nb" and printable("a\nb") == "a\\x0ab"


def test_cut_keeps_the_start_and_marks_the_cut():
    assert cut("x" * 100, 10) == "x" * 9 + "…" and cut("short", 10) == "short"


def test_shown_is_bounded_for_anything():
    assert "an integer of about 5001 digits" in shown(10 ** 5000)
    text = shown("y" * 100_000)
    assert len(text) < 250 and "(100002 characters)" in text

    class Evil:
        def __repr__(self):
            raise RuntimeError("no")

    assert shown(Evil()) == "<Evil>"


def test_tables_escape_and_cut_cells():
    table = render_table(["symbol", "reason"], [[NASTY, "r" * 1000], ["X" * 100_000, None]])
    assert "\x1b" not in table and "\x07" not in table and "\u2028" not in table
    assert all(len(line) < CELL_MAX + 220 for line in table.splitlines())
    assert "…" in table and "-" in table.splitlines()[-1]


def test_config_errors_show_values_escaped_and_bounded():
    message = str(ConfigError("symbols", NASTY + "z" * 10_000, "letters"))
    assert "\x1b" not in message and len(message) < 400


def test_log_messages_are_escaped_but_tracebacks_keep_their_lines():
    formatter = PrintableFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "signal %s on %s", ("1", NASTY), None)
    line = formatter.format(record)
    assert "\x1b" not in line and "\\x1b]0;pwned" in line
    try:
        raise ValueError("boom")
    except ValueError:
        import sys
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert "\nTraceback" in formatter.format(record)
