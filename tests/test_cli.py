"""The trio-bot command line, end to end: run, simulate, waves, positions."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trio_bot.cli import main

ROOT = Path(__file__).resolve().parent.parent
INCIDENT = ROOT / "examples" / "incident-2025-10-19.toml"


def test_simulate_json_report(capsys):
    assert main(["simulate", str(INCIDENT), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scenario"] == "incident-2025-10-19"
    assert report["virtual_seconds"] == 900.0
    assert report["waves"][0]["counts"]["opened"] == 5
    assert 0 <= report["waves"][0]["at"] < 1  # simulation reports keep the scenario's virtual seconds
    assert set(report) >= {"scenario", "virtual_seconds", "waves", "positions", "exchange", "invariants"}


def test_simulate_text_report(capsys):
    assert main(["simulate", str(INCIDENT)]) == 0
    out = capsys.readouterr().out
    assert "5 opened, 0 failed, 0 timed out, 1 skipped" in out and "0.7969" in out


def test_broken_invariant_exits_1(tmp_path, capsys):
    scenario = tmp_path / "s.toml"
    scenario.write_text(INCIDENT.read_text() + """
[[faults]]
point = "exchange.stop_order"
effect = "reject"
[[faults]]
point = "exchange.close_order"
effect = "error"
""")
    assert main(["simulate", str(scenario), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["invariants"]["unprotected_positions"] > 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[faults]]\npoint = "exchange.nope"\neffect = "hang"\n', "faults[0].point = 'exchange.nope'"),
        ('[[faults]]\npoint = "exchange.query"\neffect = "explode"\n', "faults[0].effect = 'explode'"),
        ('[engine]\nmax_concurrent_signals = "5"\n', "engine.max_concurrent_signals = '5': expected an integer"),
        ('bogus = 1\n', "scenario: bogus = 1: expected one of"),
        ('[[waves]]\nat = 0\nsignals = "x"\n', "waves[0].signals = 'x': expected an array"),
        ('name = [\n', "valid TOML"),
    ],
)
def test_bad_scenario_exits_2_with_the_key(tmp_path, capsys, text, message):
    scenario = tmp_path / "bad.toml"
    scenario.write_text(text)
    assert main(["simulate", str(scenario)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_malformed_signal_is_rejected_not_a_bad_file(tmp_path, capsys):
    scenario = tmp_path / "s.toml"
    scenario.write_text("""
[exchange.markets.BTCUSDT]
price = 60000.0
[[waves]]
at = 0
signals = [{ id = "a", symbol = "BTCUSDT", side = "sideways", score = 1.0 }, { id = "b" }]
""")
    assert main(["simulate", str(scenario), "--json"]) == 0
    signals = json.loads(capsys.readouterr().out)["waves"][0]["signals"]
    assert [s["outcome"] for s in signals] == ["rejected", "rejected"]


def run_cli(*args, db, **kw):
    return subprocess.run([sys.executable, "-m", "trio_bot.cli", *args, "--db", f"sqlite:///{db}"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, **kw)


def test_run_then_read_back_waves_and_positions(tmp_path):
    db = tmp_path / "bot.db"
    signals = tmp_path / "waves.jsonl"
    signals.write_text(
        json.dumps([{"id": "1", "symbol": "BTCUSDT", "side": "long", "score": 9},
                    {"id": "2", "symbol": "ETHUSDT", "side": "sell", "score": 8},
                    {"id": "3", "symbol": "NOPEUSDT", "side": "long", "score": 7}]) + "\n"
        + json.dumps({"signals": [{"id": "4", "symbol": "BTCUSDT", "side": "long", "score": 9}]}) + "\n")
    before = time.time()
    result = run_cli("run", "--signals", str(signals), "--waves", "2", "--wave-interval", "0.2", db=db)
    after = time.time()
    assert result.returncode == 0, result.stderr
    assert "wave w1: 2 opened" in result.stdout and "unknown symbol 'NOPEUSDT'" in result.stdout

    waves = run_cli("waves", "--json", db=db)
    data = json.loads(waves.stdout)["waves"]
    assert [w["id"] for w in data] == ["w1", "w2"]
    # `at` is when the wave started, wall-clock epoch seconds (not the engine's monotonic clock).
    assert before <= data[0]["at"] <= data[1]["at"] <= after
    assert data[0]["counts"] == {"candidates": 3, "rejected": 1, "skipped": 0, "attempted": 2, "opened": 2,
                                 "failed": 0, "timed_out": 0}
    assert data[1]["signals"][0]["reason"] == "a position is already open or opening on BTCUSDT"
    last = json.loads(run_cli("waves", "--json", "--last", "1", db=db).stdout)["waves"]
    assert [w["id"] for w in last] == ["w2"]

    positions = json.loads(run_cli("positions", "--json", db=db).stdout)["positions"]
    assert {(p["symbol"], p["side"], p["status"]) for p in positions} == {
        ("BTCUSDT", "long", "open"), ("ETHUSDT", "short", "open")}
    assert all(p["stop_price"] and p["trailing"] in ("active", "pending") for p in positions)
    text = run_cli("positions", "--all", db=db).stdout
    assert "BTCUSDT" in text and "ETHUSDT" in text


def test_run_stops_cleanly_on_sigterm(tmp_path):
    db = tmp_path / "bot.db"
    proc = subprocess.Popen([sys.executable, "-m", "trio_bot.cli", "run", "--db", f"sqlite:///{db}",
                             "--wave-interval", "600", "--seed", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("id  symbol"):  # the first wave's positions table is printed
            break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "SIGTERM: finishing up" in out
    waves = json.loads(run_cli("waves", "--json", db=db).stdout)["waves"]
    assert len(waves) == 1 and waves[0]["counts"]["opened"] == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--waves", "0"], "--waves = 0: expected an integer in [1, 1000000000]"),
        (["run", "--db", "mysql://x"], "--db = 'mysql://x': expected a URL like sqlite:///trio-bot.db or postgresql://"),
        (["waves", "--db", "nope"], "--db = 'nope'"),
    ],
)
def test_bad_arguments_exit_2(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_bad_config_file_names_the_key(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "c.toml"
    config.write_text("[engine]\nstop_loss_percent = 120\n")
    assert main(["run", "--config", str(config), "--waves", "1"]) == 2
    err = capsys.readouterr().err
    assert "stop_loss_percent = 120: expected a number in (0, 100)" in err
    assert not (tmp_path / "trio-bot.db").exists(), "nothing ran"


def test_bad_signals_file_names_the_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    signals = tmp_path / "s.jsonl"
    signals.write_text('[{"id": "1"}]\n{not json\n')
    assert main(["run", "--signals", str(signals), "--waves", "1"]) == 2
    assert f"{signals}:2" in capsys.readouterr().err


if os.name != "posix":  # pragma: no cover
    pytest.skip("signals need POSIX", allow_module_level=True)


def test_paper_account_survives_a_restart(tmp_path):
    db = tmp_path / "bot.db"
    first = run_cli("run", "--waves", "1", "--seed", "5", db=db)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "bot.db.paper.sqlite").exists()
    second = run_cli("run", "--waves", "1", "--seed", "5", "--wave-interval", "1", db=db)
    assert second.returncode == 0, second.stderr
    assert "5 open positions loaded" in second.stdout
    # The same demo seed picks the same six symbols: the five held ones are busy now.
    assert "wave w2: 1 opened, 0 failed, 0 timed out, 0 skipped, 5 rejected" in second.stdout


def test_embedding_example_runs():
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "embed.py")], capture_output=True,
                            text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "w1: 2 opened" in result.stdout and "open: #1" in result.stdout


def test_events_show_the_timeline_of_a_signal(tmp_path):
    db = tmp_path / "bot.db"
    signals = tmp_path / "waves.jsonl"
    signals.write_text(json.dumps([{"id": "s1", "symbol": "BTCUSDT", "side": "long", "score": 9}]) + "\n")
    assert run_cli("run", "--signals", str(signals), "--waves", "1", db=db).returncode == 0
    timeline = json.loads(run_cli("events", "--signal", "s1", "--json", db=db).stdout)["events"]
    kinds = [e["kind"] for e in timeline]
    assert kinds[:4] == ["signal_started", "intent_stored", "entry_sent", "entry_filled"]
    assert "stop_placed" in kinds and kinds[-1] == "signal_outcome"
    text = run_cli("events", "--position", "1", db=db).stdout
    assert "stop_placed" in text and "time (UTC)" in text
