"""The floors of the house, enforced (README: Architecture).

    bench/           benchmarks                      may import everything
    trio_bot/        wiring: CLI, run, simulate...   the only code importing adapters
    adapters/        production adapters             core only
    adapters/sim/    test instruments                core and production adapters
    engine/nursery/  tasks and time                  core only (and Trio)
    engine/          the pure core                   stdlib and attrs only

Test instruments (`adapters.sim`) are reachable from production code paths
only through the wiring that offers paper mode, `simulate` and `fake-exchange`.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = sorted((ROOT / "engine").glob("*.py"))
NURSERY = sorted((ROOT / "engine" / "nursery").glob("*.py"))
SIM = sorted((ROOT / "adapters" / "sim").rglob("*.py"))
PRODUCTION_ADAPTERS = sorted(p for p in (ROOT / "adapters").rglob("*.py") if p not in SIM)
WIRING = sorted((ROOT / "trio_bot").rglob("*.py"))


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def offenders(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in paths:
        for name in imports(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    return bad


def test_the_floors_exist() -> None:
    assert CORE and NURSERY and SIM and PRODUCTION_ADAPTERS and WIRING


def test_core_imports_neither_trio_nor_nursery_nor_adapters_nor_wiring() -> None:
    forbidden = ("trio", "trio_asyncio", "ccxt", "triopg", "asyncpg", "engine.nursery", "adapters", "trio_bot")
    assert offenders(CORE, forbidden) == []


def test_nursery_imports_no_adapter_and_no_wiring() -> None:
    assert offenders(NURSERY, ("adapters", "trio_bot", "ccxt", "triopg")) == []


def test_adapters_import_no_nursery_and_no_wiring() -> None:
    assert offenders(PRODUCTION_ADAPTERS + SIM, ("engine.nursery", "trio_bot")) == []


def test_production_adapters_never_import_test_instruments() -> None:
    assert offenders(PRODUCTION_ADAPTERS, ("adapters.sim",)) == []


def test_only_the_wiring_that_offers_simulation_imports_test_instruments() -> None:
    """Paper mode (`run`), `simulate` and the CLI's `fake-exchange`/`signal-server` commands are
    the only doors from production code paths to `adapters.sim`."""
    doors = {ROOT / "trio_bot" / name for name in ("cli/instruments.py", "run.py", "simulate.py")}
    assert offenders([p for p in WIRING if p not in doors], ("adapters.sim",)) == []
    assert offenders(CORE + NURSERY, ("adapters.sim",)) == []


def test_core_modules_load_no_trio_at_import_time() -> None:
    """A subprocess imports every core module and looks at what got loaded."""
    modules = [f"engine.{p.stem}" for p in CORE if p.stem != "__init__"]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'trio', 'trio_asyncio', 'adapters', 'trio_bot'}"
        " or m.startswith('engine.nursery'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == ""
