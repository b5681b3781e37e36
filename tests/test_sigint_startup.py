"""Ctrl-C at any moment of `trio-bot run`'s start-up: one line, no traceback, exit status 0.

Each trial starts `trio-bot run` (paper exchange, SQLite) and sends SIGINT at one named moment:
while Python loads the command (moments taken from `-X importtime`, which reports each module
as it finishes loading), while the engine starts, after the first wave, and while a `--standby`
instance waits for the account's lease. Real processes and real time: marked e2e.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BOUND = 60.0  # seconds any one step of a trial may take, on a busy machine


class Proc:
    """A `trio-bot run` whose stdout and stderr lines are read as they come."""

    def __init__(self, db: Path, *extra: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-X", "importtime", "-m", "trio_bot.cli", "run", "--db", f"sqlite:///{db}", "--no-api",
             "--seed", "3", "--wave-interval", "600", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
        self.lines: queue.Queue[tuple[str, str]] = queue.Queue()
        self.seen: dict[str, list[str]] = {"out": [], "err": []}
        self.readers = [threading.Thread(target=self._read, args=(name, stream), daemon=True)
                        for name, stream in (("out", self.proc.stdout), ("err", self.proc.stderr))]
        for reader in self.readers:
            reader.start()

    def _read(self, name: str, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.seen[name].append(line)
            self.lines.put((name, line))

    def wait_for(self, moment: Callable[[str, str], bool]) -> None:
        deadline = time.monotonic() + BOUND
        while True:
            left = deadline - time.monotonic()
            assert left > 0 and self.proc.poll() is None, f"the moment never came: {self.text()[-2000:]}"
            try:
                name, line = self.lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if moment(name, line):
                return

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout=BOUND)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=BOUND)
            raise AssertionError(f"SIGINT did not stop the run: {self.text()[-2000:]}") from None
        for reader in self.readers:
            reader.join(timeout=BOUND)
        return code

    def text(self) -> str:
        return "".join(self.seen["out"]) + "".join(line for line in self.seen["err"]
                                                   if not line.startswith("import time:"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=BOUND)


def loaded(module: str) -> Callable[[str, str], bool]:
    """The moment Python has finished loading `module` (an `-X importtime` line)."""
    return lambda name, line: (name == "err" and line.startswith("import time:")
                               and line.rsplit("|", 1)[-1].strip() == module)


def printed(text: str) -> Callable[[str, str], bool]:
    return lambda name, line: name == "out" and text in line


MOMENTS = {
    # The first module `main` loads: from here on the entry point answers a Ctrl-C. (Before, Python
    # itself is still starting, or runpy is reading `__main__`: the interpreter's default applies.)
    "command loading": loaded("engine.text"),
    "trio loaded": loaded("trio"),
    "run loaded": loaded("trio_bot.run"),
    "store driver loaded": loaded("adapters.sqlite_store"),
    "start-up done": printed("Ctrl-C to stop."),
    "first wave running": printed("trio-bot: wave of"),
}


def _assert_clean(code: int, text: str) -> None:
    assert "Traceback" not in text, text
    assert "KeyboardInterrupt" not in text, text
    assert code == 0, f"exit status {code}: {text[-2000:]}"
    assert "trio-bot: interrupted" in text or "SIGINT: finishing up" in text, text


@pytest.mark.e2e
@pytest.mark.parametrize("moment", list(MOMENTS))
def test_sigint_at_any_moment_of_start_up_exits_0_without_a_traceback(tmp_path, moment):
    db = tmp_path / "bot.db"
    proc = Proc(db)
    try:
        proc.wait_for(MOMENTS[moment])
        code = proc.interrupt()
    finally:
        proc.stop()
    _assert_clean(code, proc.text())
    if moment == "first wave running":
        # The run stopped cleanly: the wave it was in has its final record, every signal an outcome.
        waves = subprocess.run([sys.executable, "-m", "trio_bot.cli", "waves", "--json", "--db", f"sqlite:///{db}"],
                               capture_output=True, text=True, cwd=ROOT, timeout=BOUND, check=True)
        stored = json.loads(waves.stdout)["waves"]
        assert stored and all(w["duration"] is not None for w in stored), stored


@pytest.mark.e2e
def test_sigint_while_a_standby_instance_waits_for_the_lease_stops_it_at_once(tmp_path):
    db = tmp_path / "bot.db"
    first = Proc(db)
    try:
        first.wait_for(printed("Ctrl-C to stop."))
        standby = Proc(db, "--standby")
        try:
            standby.wait_for(lambda name, line: name == "err" and "standby:" in line)
            code = standby.interrupt()
        finally:
            standby.stop()
        _assert_clean(code, standby.text())
        assert "nothing was traded" in standby.text()
        assert first.proc.poll() is None, "the instance holding the lease must be untouched"
        assert first.interrupt() == 0
    finally:
        first.stop()
