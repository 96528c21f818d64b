"""The repository root is the package; its feature folders must never shadow the stdlib."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAMESPACES = ("consult", "queue", "web", "kiosk")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_import_queue_from_the_root_is_the_stdlib() -> None:
    result = run("-c", "import queue; print(queue.__file__)")
    assert result.returncode == 0, result.stderr
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    assert Path(result.stdout.strip()).resolve() == stdlib / "queue.py"


def test_redis_imports_from_the_root() -> None:
    # redis-py does `from queue import LifoQueue`: it breaks if queue/ shadows the stdlib.
    result = run("-c", "import redis, madoguchi.queue.tickets; print(redis.__version__)")
    assert result.returncode == 0, result.stderr


def test_python_m_pytest_works_from_the_root() -> None:
    result = run("-m", "pytest", "--collect-only", "-q", "tests/test_layout.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test_import_queue_from_the_root_is_the_stdlib" in result.stdout


def test_feature_folders_are_namespace_packages() -> None:
    for folder in (*NAMESPACES, "tests"):
        assert (ROOT / folder).is_dir(), folder
        assert not (ROOT / folder / "__init__.py").exists(), f"{folder}/__init__.py must not exist"
    assert not (ROOT / "conftest.py").exists()
    assert (ROOT / "__init__.py").is_file()


def test_no_root_module_shadows_the_stdlib_or_a_dependency() -> None:
    taken = set(sys.stdlib_module_names)
    for dist in metadata.distributions():
        top = dist.read_text("top_level.txt") or ""
        taken.update(line.strip() for line in top.splitlines() if line.strip())
    taken.discard("madoguchi")
    ours = {p.stem for p in ROOT.glob("*.py")} | {
        p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")
    }
    ours -= {"__init__", "tests", "bench", "build", "data", *NAMESPACES}
    assert not ours & taken, f"root names that shadow other modules: {sorted(ours & taken)}"
    # the namespace folders share stdlib names on purpose; they are safe only without __init__
    assert "queue" in taken
