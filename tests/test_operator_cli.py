"""`trio-bot run` serves the operator API; `status`, `pause`, `resume` and `close` talk to it over HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.test_cli import ROOT
from trio_bot.api.client import target
from trio_bot.api.settings import ApiSettings
from trio_bot.cli import main

TOKEN = "a-configured-token-123456"


def test_status_pause_close_resume_over_http(tmp_path, capsys, monkeypatch):
    env = {**os.environ, "TRIO_BOT_API_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-m", "trio_bot.cli", "run", "--db", f"sqlite:///{tmp_path / 'bot.db'}",
         "--wave-interval", "600", "--seed", "1", "--api-listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    url = ""
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("trio-bot: dashboard "):
                url = line.split()[2]
                assert line.strip().endswith("(token: the configured one)")  # never printed
            if line.startswith("id  symbol"):  # the first wave's positions table
                break
        assert url.startswith("http://127.0.0.1:")
        monkeypatch.setenv("TRIO_BOT_API_TOKEN", TOKEN)

        def run(*args):
            code = main([*args, "--url", url])
            out, err = capsys.readouterr()
            return code, out, err

        metrics = _metrics(url)
        assert metrics['triobot_signals_received_total{source="demo"}'] == 6
        assert metrics['triobot_signal_outcomes_total{outcome="opened"}'] == 5
        assert metrics["triobot_waves_total"] == 1 and metrics["triobot_open_positions"] == 5
        assert metrics["triobot_unprotected_positions"] == 0 and metrics["triobot_wave_duration_seconds_count"] == 1
        assert metrics['triobot_call_duration_seconds_count{point="exchange.entry_order"}'] == 5
        grafana = (ROOT / "examples" / "grafana-dashboard.json").read_text()
        names = {re.sub(r"\{.*", "", k) for k in metrics}
        for used in set(re.findall(r"triobot_[a-z_]+", grafana)):
            assert used in names or f"{used}_total" in names or used.removesuffix("_total") in names, used

        code, out, _ = run("status", "--json")
        status = json.loads(out)
        assert code == 0 and status["state"] == "running" and status["open_positions"] == 5
        assert status["last_wave"]["counts"]["opened"] == 5
        code, out, _ = run("pause", "--reason", "maintenance")
        assert code == 0 and "state: paused (maintenance)" in out
        code, out, err = run("close", "1")
        assert code == 0, err
        assert out.startswith("position 1 closed @") and "(operator)" in out
        code, _, err = run("close", "1")
        assert code == 1 and err.strip().endswith("HTTP 409: position 1 is closed, not open")
        code, _, err = run("close", "99")
        assert code == 1 and "HTTP 404: no position 99" in err
        code, out, _ = run("status")
        assert "state: paused (maintenance)" in out and "open positions: 4" in out
        code, out, _ = run("resume", "--json")
        assert code == 0 and json.loads(out)["state"] == "running"

        monkeypatch.delenv("TRIO_BOT_API_TOKEN")
        code, _, err = run("status")
        assert code == 1 and "HTTP 401" in err and TOKEN not in err
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def _metrics(url: str) -> dict[str, float]:
    """Every sample, and every declared family (from `# TYPE` lines, as NaN)."""
    request = urllib.request.Request(url.rstrip("/") + "/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    families = {line.split()[2]: float("nan") for line in text.splitlines() if line.startswith("# TYPE ")}
    return {**families, **{line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                           if line and not line.startswith("#")}}


def test_the_dashboard_link_carries_the_token_and_a_dead_address_says_so(capsys):
    t = target("http://127.0.0.1:9/#token=abc", ApiSettings(), environ={})
    assert (t.base, t.token) == ("http://127.0.0.1:9", "abc")
    t = target(None, ApiSettings(port=1234, token_env="MY_TOKEN"), environ={"MY_TOKEN": "xyz"})
    assert (t.base, t.token) == ("http://127.0.0.1:1234", "xyz")
    assert main(["status", "--url", "http://127.0.0.1:9"]) == 1
    assert "no trio-bot API at http://127.0.0.1:9" in capsys.readouterr().err
    assert main(["status", "--url", "ftp://x"]) == 2


def test_api_address_rules(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        assert main(["run", "--waves", "1", "--api-listen", f"127.0.0.1:{port}"]) == 2
        assert f"api.listen = '127.0.0.1:{port}': expected an address trio-bot can listen on" \
            in capsys.readouterr().err
    finally:
        busy.close()
    config = tmp_path / "run.toml"
    config.write_text('[api]\nlisten = "0.0.0.0:0"\ntoken_env = "NO_SUCH_TOKEN_VARIABLE"\n')
    assert main(["run", "--config", str(config), "--waves", "1"]) == 2
    assert "a loopback address unless a token is set in $NO_SUCH_TOKEN_VARIABLE" in capsys.readouterr().err
    config.write_text('[api]\nlisten = "localhost"\n')
    assert main(["run", "--config", str(config), "--waves", "1"]) == 2
    assert "api.listen = 'localhost': expected an address like 127.0.0.1:8080" in capsys.readouterr().err
    config.write_text('[api]\nport = 80\n')
    assert main(["run", "--config", str(config), "--waves", "1"]) == 2
    assert "api.port = 80: expected one of: enabled, listen" in capsys.readouterr().err


def test_a_busy_default_port_moves_on(tmp_path):
    from trio_bot.api.server import bind_listener

    first = bind_listener(ApiSettings(port=18080))
    try:
        second = bind_listener(ApiSettings(port=first.getsockname()[1]))
        try:
            assert second.getsockname()[1] > first.getsockname()[1]
        finally:
            second.close()
        with pytest.raises(Exception, match="address trio-bot can listen on"):
            bind_listener(ApiSettings(port=first.getsockname()[1], listen_given=True))
    finally:
        first.close()


def test_a_generated_token_is_printed_in_the_link_and_no_api_serves_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TRIO_BOT_API_TOKEN", raising=False)
    assert main(["run", "--waves", "1", "--seed", "3", "--api-listen", "127.0.0.1:0"]) == 0
    link = [line for line in capsys.readouterr().out.splitlines() if line.startswith("trio-bot: dashboard ")]
    assert len(link) == 1 and "/#token=" in link[0] and len(link[0].split("#token=")[1]) >= 24
    assert main(["run", "--waves", "1", "--seed", "3", "--no-api"]) == 0
    assert "dashboard" not in capsys.readouterr().out


def test_client_commands_find_the_instance_whose_api_moved_off_the_busy_default_port(tmp_path, capsys, monkeypatch):
    """8080 is taken: the instance listens on the next free port, and `status`/`pause` without
    --url still reach it, from the address it recorded next to its database."""
    db = tmp_path / "bot.db"
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    deadline = time.monotonic() + 20
    while True:  # hold 8080 ourselves: another process holding it now may let it go at any moment
        try:
            blocker.bind(("127.0.0.1", 8080))
            blocker.listen(1)
            break
        except OSError:
            if time.monotonic() > deadline:
                break  # held all along by another process: busy all the same
            time.sleep(0.2)
    env = {**os.environ, "TRIO_BOT_API_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-m", "trio_bot.cli", "run", "--db", f"sqlite:///{db}", "--wave-interval", "600",
         "--seed", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        assert proc.stdout is not None
        url = ""
        for line in proc.stdout:
            if line.startswith("trio-bot: dashboard "):
                url = line.split()[2].rstrip("/")
                break
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":8080"), url
        (recorded,) = tmp_path.glob("bot.db.*.api.json")
        assert json.loads(recorded.read_text()) == {"url": url, "pid": proc.pid}
        assert TOKEN not in recorded.read_text()
        monkeypatch.setenv("TRIO_BOT_API_TOKEN", TOKEN)
        assert main(["status", "--json", "--db", f"sqlite:///{db}"]) == 0
        assert json.loads(capsys.readouterr().out)["state"] == "running"
        assert main(["pause", "--reason", "moved", "--db", f"sqlite:///{db}"]) == 0
        assert "state: paused (moved)" in capsys.readouterr().out
    finally:
        blocker.close()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert not list(tmp_path.glob("bot.db.*.api.json")), "the address must be removed at exit"


def test_an_address_left_by_a_killed_instance_is_ignored(tmp_path):
    from trio_bot.api.address import address_path, record_address, running_url

    db = f"sqlite:///{tmp_path / 'bot.db'}"
    path = address_path(db, "paper")
    assert path is not None
    record_address(path, "http://127.0.0.1:8099")
    assert running_url(db) == "http://127.0.0.1:8099"  # this process is alive
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True, timeout=30)
    path.write_text(json.dumps({"url": "http://127.0.0.1:8099", "pid": int(gone.stdout)}))
    assert running_url(db) is None
    assert address_path("sqlite:///:memory:", "paper") is None
