"""The package's imports run one way (pyproject.toml's import-linter contracts)."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint(cwd: Path) -> subprocess.CompletedProcess:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "lint-imports is missing; it is pinned in requirements.txt"
    return subprocess.run([lint, "--no-cache"], cwd=cwd, capture_output=True, text=True)


def test_layers_and_no_cycles_hold():
    proc = _lint(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 kept, 0 broken" in proc.stdout


def test_the_contract_catches_a_cycle_hidden_in_a_function(tmp_path):
    """A function-local import from the hub module back into the registry is a cycle, and fails."""
    copy = tmp_path / "project"
    shutil.copytree(ROOT / "lib", copy / "lib", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    hub = copy / "lib" / "plmdepth" / "models" / "hub.py"
    hub.write_text(hub.read_text() + "\n\ndef _names():\n    from plmdepth.models.registry import REGISTRY\n\n"
                   "    return list(REGISTRY)\n")
    proc = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, 'lib'); "
                           "from importlinter.cli import lint_imports_command; lint_imports_command()", "--no-cache"],
                          cwd=copy, capture_output=True, text=True)
    assert proc.returncode != 0 and "no import cycles among the modules of any package BROKEN" in proc.stdout, \
        proc.stdout + proc.stderr
