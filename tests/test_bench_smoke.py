"""The benchmark command runs and reports every headline key (it asserts no timings)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import KEYS

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.e2e  # the whole quick benchmark in real time: run by `make test-e2e` (and CI)
def test_quick_benchmark_prints_every_key(tmp_path):
    result = subprocess.run([sys.executable, "-m", "bench", "--quick", "--json", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == set(KEYS)
    optional = {"pg_over_asyncpg_ratio", "signal_to_entry_ms_p99_nats"}  # need a database, a broker
    assert all(report[k] is not None for k in KEYS if k not in optional)
    assert (tmp_path / "results.json").exists() and (tmp_path / "wave_scaling.png").stat().st_size > 0


def test_only_update_rewrites_the_tracked_results(monkeypatch, tmp_path, capsys):
    """A run to look leaves bench/results.json alone; --update (and only it) rewrites it."""
    import bench.__main__ as bench_main

    drawn = []
    monkeypatch.setattr(bench_main, "run", lambda quick: {"machine": {"quick": quick}})
    monkeypatch.setattr(bench_main, "table", lambda results: "the table")
    monkeypatch.setattr(bench_main, "plot", lambda results, path: drawn.append(path))
    monkeypatch.setattr(bench_main, "HERE", tmp_path)
    monkeypatch.setattr(sys, "argv", ["bench", "--quick"])
    bench_main.main()
    assert list(tmp_path.iterdir()) == [] and drawn == []
    assert "the table" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["bench", "--quick", "--update"])
    bench_main.main()
    assert json.loads((tmp_path / "results.json").read_text()) == {"machine": {"quick": True}}
    assert drawn == [tmp_path / "wave_scaling.png"]
