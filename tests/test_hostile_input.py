"""Careless and hostile input, through the same entry point as the `trio-bot` command.

Every case ends with exit 0, 1 or 2 and at most one `trio-bot: error:` line — never a
traceback, a hang, a leaked password or a lost wave.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from trio_bot.cli import main

ROOT = Path(__file__).resolve().parent.parent
MARKET = '[exchange.markets.BTCUSDT]\nprice = 60000.0\n'
WAVE = '[[waves]]\nat = 0\nsignals = [{ id = "a", symbol = "BTCUSDT", side = "long", score = 1.0 }]\n'


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    assert err.count("\n") <= 1, err
    return code, out, err


def signals_file(tmp_path: Path, *waves: object, raw: str | None = None) -> str:
    path = tmp_path / "waves.jsonl"
    path.write_text(raw if raw is not None else "".join(json.dumps(w) + "\n" for w in waves), encoding="utf-8")
    return str(path)


def stored_waves(db: Path) -> list[dict]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT wave_id, signal_id, outcome, reason FROM signal_outcomes "
                            "ORDER BY wave_id, rank").fetchall()
    return [{"wave": w, "id": i, "outcome": o, "reason": r} for w, i, o, r in rows]


# --- a bad signal never stops `run` or loses a wave ---

def test_a_signal_with_a_huge_integer_score_is_rejected_and_the_run_goes_on(tmp_path, capsys):
    db = tmp_path / "bot.db"
    huge = int("9" * 400)
    path = signals_file(tmp_path,
                        [{"id": "1", "symbol": "BTCUSDT", "side": "long", "score": huge},
                         {"id": "2", "symbol": "ETHUSDT", "side": "long", "score": 5}],
                        [{"id": "3", "symbol": "SOLUSDT", "side": "short", "score": 1}])
    code, out, _ = cli(capsys, "run", "--signals", path, "--waves", "2", "--wave-interval", "0.01",
                       "--db", f"sqlite:///{db}")
    assert code == 0
    rows = {r["id"]: r for r in stored_waves(db)}
    assert rows["1"]["outcome"] == "rejected" and "is not a finite number" in rows["1"]["reason"]
    assert rows["2"]["outcome"] == "opened" and rows["3"]["outcome"] == "opened"
    assert "wave w2: 1 opened" in out


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("position_size_usdt = 1e308", "position_size_usdt = 1e+308: expected a number in [0.01, 1e+09]"),
        ("retry_backoff = 1e308", "retry_backoff = 1e+308: expected a number in [0, 60]"),
        ("order_rate_per_second = 5e-324", "order_rate_per_second = 5e-324: expected a number in [0.01, 1e+09]"),
        ("order_rate_per_second = 0.05", "at least 1/call_timeout (0.1)"),
        ("sweep_interval = 1e-9", "sweep_interval = 1e-09: expected 0 (off) or at least 1 seconds"),
        ("max_positions_per_wave = 99999999999999999999999", "max_positions_per_wave = 99999999999999999999999"),
    ],
)
def test_extreme_engine_settings_are_refused_before_anything_runs(tmp_path, capsys, monkeypatch, config, message):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "c.toml"
    path.write_text(f"[engine]\n{config}\n")
    code, _, err = cli(capsys, "run", "--config", str(path), "--waves", "1")
    assert code == 2 and message in err
    assert not (tmp_path / "trio-bot.db").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[exchange.markets.BTCUSDT]\nprice = 5e-324\n', "exchange.markets.BTCUSDT.price = 5e-324: expected a number "
                                                          "in [1e-08, 1e+09]"),
        ('[exchange.markets.BTCUSDT]\nprice = 1.0\ntick_size = 1e-300\n', "tick_size = 1e-300"),
        (MARKET + '[[ticks]]\nat = 1\nsymbol = "BTCUSDT"\nprice = 1e308\n', "ticks[0].price = 1e+308"),
        (MARKET + WAVE + '[run]\nuntil = 1e12\n', "run.until = 1000000000000.0: expected a number in [0, 86400]"),
        (MARKET + '[[waves]]\nat = 1e15\nsignals = []\n', "waves[0].at = 1000000000000000.0"),
        ('[exchange.markets."\\u001b[2J"]\nprice = 1.0\n', "exchange.markets.\\x1b[2J"),
        ('[engine]\nretry_backoff = 1e308\n', "engine.retry_backoff = 1e+308"),
    ],
)
def test_extreme_scenarios_exit_2_at_once(tmp_path, capsys, text, message):
    path = tmp_path / "s.toml"
    path.write_text(text)
    code, _, err = cli(capsys, "simulate", str(path))
    assert code == 2 and message in err
    assert "\x1b" not in err


# --- files that are not UTF-8, or not what they claim ---

BAD_BYTES = b"\xff\xfe not utf-8 \x80"


def test_non_utf8_config_scenario_and_signals_files_exit_2_naming_the_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"[engine]\n" + BAD_BYTES)
    for args in (["run", "--config", str(bad)], ["simulate", str(bad)], ["run", "--signals", str(bad)]):
        code, _, err = cli(capsys, *args)
        assert code == 2 and str(bad) in err and "UTF-8" in err and "line 2" in err, err


def test_non_utf8_secret_file_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    secret = tmp_path / "secret"
    secret.write_bytes(BAD_BYTES)
    config = tmp_path / "live.toml"
    config.write_text(f'[exchange]\nname = "binanceusdm"\nlive = true\napi_secret_file = "{secret}"\n')
    monkeypatch.setenv("TRIO_BOT_API_KEY", "k")
    code, _, err = cli(capsys, "run", "--config", str(config))
    assert code == 2 and "api_secret_file" in err and "UTF-8" in err
    assert "\\xff" not in err  # the secret's bytes are not echoed


def test_deeply_nested_signals_line_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = signals_file(tmp_path, raw="[" * 100_000 + "]" * 100_000 + "\n")
    code, _, err = cli(capsys, "run", "--signals", path)
    assert code == 2 and f"{path}:1" in err and "nested too deeply" in err
    assert len(err) < 400  # the 200,000-character line is not echoed


def test_a_raw_line_separator_inside_a_json_string_does_not_split_the_wave(tmp_path):
    from adapters.signals import JsonlSignalSource

    line = '[{"id": "1", "symbol": "BTC\u2028USDT", "side": "long", "score": 1}]\n'
    assert line.splitlines()[0] != line.strip()  # what splitlines() would have done
    waves = JsonlSignalSource.parse(signals_file(tmp_path, raw=line + line))
    assert len(waves) == 2 and waves[0][0]["symbol"] == "BTC\u2028USDT"


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"balance": "lots"}', '{"balance": 1e999}',
                                     json.dumps({"balance": 1.0, "prices": {"BTCUSDT": -1}, "leverage": {},
                                                 "holdings": {}, "orders": [], "next_order_id": 1}),
                                     json.dumps({"balance": 1.0, "prices": {}, "leverage": {},
                                                 "holdings": {"BTCUSDT": "x"}, "orders": [], "next_order_id": 1})])
def test_a_corrupt_paper_account_file_exits_2_naming_it(tmp_path, capsys, content):
    db = tmp_path / "bot.db"
    (tmp_path / "bot.db.paper.json").write_text(content)
    code, _, err = cli(capsys, "run", "--waves", "1", "--db", f"sqlite:///{db}")
    assert code == 2 and "bot.db.paper.json" in err and "move it away" in err


def test_run_where_the_database_cannot_be_created_exits_2(capsys):
    code, _, err = cli(capsys, "run", "--waves", "1", "--db", "sqlite:////proc/trio-bot-test/bot.db")
    assert code == 2 and "/proc/trio-bot-test/bot.db" in err


# --- command-line arguments ---

@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["waves", "--last", "-1"], "--last = -1: expected an integer in [0, 1000000000]"),
        (["events", "--position", "99999999999999999999999"], "--position = 99999999999999999999999"),
        (["events", "--position", "0"], "--position = 0"),
        (["events", "--signal", "\x1b[2J"], "--signal = '\\x1b[2J'"),
        (["run", "--wave-interval", "inf"], "--wave-interval = inf: expected a number in (0, 604800]"),
        (["run", "--wave-interval", "nan"], "--wave-interval = nan"),
        (["run", "--waves", "ten"], "--waves = 'ten': expected an integer"),
        (["fake-exchange", "--port", "-1"], "--port = -1: expected an integer in [0, 65535]"),
        (["fake-exchange", "--port", "70000"], "--port = 70000: expected an integer in [0, 65535]"),
        (["signal-server", "--demo", "--port", "70000"], "--port = 70000"),
        (["signal-server", "--demo", "--interval", "-5"], "--interval = -5.0"),
        (["nonsense"], "invalid choice: 'nonsense'"),
        (["run", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, *args)
    assert code == 2 and message in err, err
    assert "\x1b" not in err
    assert list(tmp_path.iterdir()) == []  # nothing was created


@pytest.mark.parametrize("command", [["fake-exchange"], ["signal-server", "--demo"]])
def test_a_local_server_on_a_port_in_use_exits_2(capsys, command):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = cli(capsys, *command, "--port", str(port))
    assert code == 2 and f"--port = {port}" in err and "in use" in err


# --- database URLs: one clear line, and never the password ---

@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://user:hunter2@db.example/bot", "unknown scheme 'mysql'"),
        ("postgresql://trader:hunter2@127.0.0.1:abc/bot", "postgresql://***@127.0.0.1:abc/bot"),
        ("postgresql://trader:hunter2@127.0.0.1:99999/bot", "out of range"),
        ("postgresql://trader:hunter2@127.0.0.1:0/bot", "port 0 is not in 1..65535"),
        ("postgresql://trader@127.0.0.1:99999/bot?password=hunter2", "password=***"),
    ],
)
def test_bad_database_urls_exit_2_without_the_password(tmp_path, capsys, monkeypatch, url, message):
    monkeypatch.chdir(tmp_path)
    for command in (["run", "--waves", "1"], ["waves"], ["db", "migrate"]):
        code, _, err = cli(capsys, *command, "--db", url)
        assert code == 2 and message in err, err
        assert "hunter2" not in err and "trader" not in err


def test_a_password_in_the_query_is_not_echoed_when_the_server_is_down(capsys):
    code, _, err = cli(capsys, "db", "migrate", "--db",
                       "postgresql://trader@127.0.0.1:1/bot?password=hunter2&sslpassword=hunter3")
    assert code == 1 and "cannot connect" in err
    assert "hunter2" not in err and "hunter3" not in err


# --- terminal escapes and giant fields ---

ESCAPE = "\x1b]0;pwned\x07\x1b[2J"


def test_escape_sequences_and_giant_symbols_are_neutralised_in_run_and_waves(tmp_path, capsys):
    db = tmp_path / "bot.db"
    path = signals_file(tmp_path, [{"id": "1", "symbol": ESCAPE, "side": "long", "score": 2},
                                   {"id": "2", "symbol": "X" * 100_000, "side": "long", "score": 1},
                                   {"id": "3" * 100, "symbol": "BTCUSDT", "side": "long", "score": 0}])
    code, out, err = cli(capsys, "run", "--signals", path, "--waves", "1", "--db", f"sqlite:///{db}")
    assert code == 0
    code, table, _ = cli(capsys, "waves", "--db", f"sqlite:///{db}")
    assert code == 0
    for text in (out, err, table):
        assert "\x1b" not in text and "\x07" not in text
        assert max((len(line) for line in text.splitlines()), default=0) < 400
    assert "\\x1b]0;pwned\\x07" in table and "…" in table
    code, exact, _ = cli(capsys, "waves", "--json", "--db", f"sqlite:///{db}")
    signals = json.loads(exact)["waves"][0]["signals"]
    assert signals[0]["symbol"] == ESCAPE  # JSON stays exact (the encoder escapes it)
    assert all(s["outcome"] == "rejected" for s in signals)
    assert len(signals[1]["symbol"]) <= 32 and len(signals[2]["id"]) <= 64  # stored bounded


# --- pipes ---

def test_a_closed_pipe_is_not_a_traceback(tmp_path):
    db = tmp_path / "bot.db"
    assert main(["db", "migrate", "--db", f"sqlite:///{db}"]) == 0
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO events (at, kind, detail, uid) VALUES (?, 'x', ?, ?)",
                         [(1.0, "d" * 100, f"u{i}") for i in range(3000)])
    proc = subprocess.Popen([sys.executable, "-m", "trio_bot.cli", "events", "--json", "--db", f"sqlite:///{db}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None
    proc.stdout.read(10)
    proc.stdout.close()  # like `| head -c 10`
    _, err = proc.communicate(timeout=30)
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err
    assert proc.returncode == 0


# An integer longer than Python's int-from-string limit (4,300 digits) makes json.loads raise a plain
# ValueError, which none of the JSON error handlers expected: one such score stopped `run` with a
# traceback, and in a websocket frame or a webhook body it escaped the parser.
HUGE = "9" * 5000
HUGE_SIGNAL = '{"id": "h1", "symbol": "BTCUSDT", "side": "long", "score": ' + HUGE + '}'


def test_a_score_beyond_the_int_digit_limit_is_rejected_and_the_signal_beside_it_opens(tmp_path, capsys,
                                                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = "[" + HUGE_SIGNAL + ', {"id": "ok", "symbol": "ETHUSDT", "side": "long", "score": 1}]\n'
    path = signals_file(tmp_path, raw=line)
    code, out, err = cli(capsys, "run", "--signals", path, "--waves", "1", "--no-api", "--db",
                         f"sqlite:///{tmp_path / 'bot.db'}")
    assert code == 0 and "Traceback" not in err
    assert "h1" in out and "not a finite number" in out and "opened position" in out
    assert HUGE not in out + err


def test_a_websocket_frame_with_a_huge_integer_is_parsed_not_raised():
    from adapters.signals.frames import WaveFrame, parse_frame

    frame = parse_frame("[" + HUGE_SIGNAL + "]")
    assert isinstance(frame, WaveFrame) and frame.signals[0]["score"] == float("inf")


def test_a_webhook_body_with_a_huge_integer_is_parsed_not_raised():
    from adapters.signals.webhook_body import parse_body

    posted = parse_body(("[" + HUGE_SIGNAL + "]").encode())
    assert posted.signals[0]["score"] == float("inf")
