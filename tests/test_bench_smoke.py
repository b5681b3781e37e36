"""The benchmark command runs and reports every headline key (it asserts no timings)."""

import json
import subprocess
import sys
from pathlib import Path

from bench.__main__ import KEYS

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_prints_every_key(tmp_path):
    result = subprocess.run([sys.executable, "-m", "bench", "--quick", "--json", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == set(KEYS)
    assert all(report[k] is not None for k in KEYS if k != "pg_over_asyncpg_ratio")
    assert (tmp_path / "results.json").exists() and (tmp_path / "wave_scaling.png").stat().st_size > 0
