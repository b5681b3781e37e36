"""The split of DESIGN.md, enforced: the core imports no Trio, adapters never import the nursery."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = [p for p in (ROOT / "engine").glob("*.py") if p.name not in {"__init__.py", "cli.py"}]


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_core_uses_only_stdlib_and_attrs():
    for path in CORE:
        for name in imports(path):
            top = name.split(".")[0]
            assert top not in {"trio", "trio_asyncio", "ccxt", "triopg", "adapters"}, f"{path.name}: {name}"
            assert not name.startswith(("engine.nursery", "engine.app")), f"{path.name}: {name}"


def test_adapters_never_import_the_nursery_or_wiring():
    for path in (ROOT / "adapters").rglob("*.py"):
        for name in imports(path):
            assert not name.startswith(("engine.nursery", "engine.app", "engine.cli")), f"{path}: {name}"


def test_nursery_imports_no_adapter():
    for path in (ROOT / "engine" / "nursery").glob("*.py"):
        for name in imports(path):
            assert not name.startswith("adapters"), f"{path.name}: {name}"
