"""The command line on PostgreSQL, end to end, in real time; and one instance per account."""

import json
import signal
import subprocess
import sys

from adapters.postgres_store import SCHEMA_VERSION
from tests.test_cli import ROOT


def cli(*args, cwd=ROOT, timeout=60):
    return subprocess.run([sys.executable, "-m", "trio_bot.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def test_run_then_read_back_on_postgres(pg_url, tmp_path):
    assert cli("db", "migrate", "--db", pg_url).stdout.strip() == f"trio-bot: schema at version {SCHEMA_VERSION}"
    assert cli("db", "migrate", "--db", pg_url).returncode == 0  # idempotent
    result = cli("run", "--db", pg_url, "--waves", "2", "--wave-interval", "0.5", "--seed", "9", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    waves = json.loads(cli("waves", "--db", pg_url, "--json").stdout)["waves"]
    assert [w["id"] for w in waves] == ["w1", "w2"]
    assert waves[0]["counts"]["opened"] == 5
    positions = json.loads(cli("positions", "--db", pg_url, "--json", "--all").stdout)["positions"]
    assert len(positions) >= 5 and all(p["stop_price"] for p in positions)


def start_run(db, tmp_path, *extra):
    proc = subprocess.Popen([sys.executable, "-m", "trio_bot.cli", "run", "--db", db, "--wave-interval", "600",
                             "--seed", "1", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path)
    return proc


def wait_for(proc, text):
    for line in proc.stdout:
        if text in line:
            return
    raise AssertionError(f"{text!r} never printed; stderr: {proc.stderr.read()}")


def second_instance_is_refused(db, tmp_path):
    first = start_run(db, tmp_path)
    try:
        wait_for(first, "Ctrl-C to stop")
        second = subprocess.run([sys.executable, "-m", "trio_bot.cli", "run", "--db", db, "--waves", "1"],
                                capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert second.returncode == 1
        assert "another trio-bot instance is trading account 'paper'" in second.stderr
        assert second.stdout == ""  # it never traded
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)
    assert first.returncode == 0


def test_second_instance_on_the_same_account_is_refused_postgres(pg_url, tmp_path):
    second_instance_is_refused(pg_url, tmp_path)


def test_second_instance_on_the_same_account_is_refused_sqlite(tmp_path):
    second_instance_is_refused(f"sqlite:///{tmp_path / 'bot.db'}", tmp_path)


def test_standby_takes_over_when_the_first_dies(pg_url, tmp_path):
    first = start_run(pg_url, tmp_path)
    wait_for(first, "id  symbol")  # its first wave opened positions
    standby = start_run(pg_url, tmp_path, "--standby", "--waves", "1")
    try:
        first.kill()  # a crash: the server releases the lease with the dead session
        first.communicate(timeout=30)
        out, err = standby.communicate(timeout=60)
        assert standby.returncode == 0, err
        assert "5 open positions loaded" in out and "wave w2" in out
    finally:
        for proc in (first, standby):
            if proc.poll() is None:
                proc.kill()
