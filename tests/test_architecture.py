"""The layers of xsr hold (import-linter contracts in pyproject.toml, docs/architecture.md),
and a circle or an upward import -- even inside a function -- breaks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("importlinter")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the package in ``root`` with the project's contracts."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from importlinter.cli import lint_imports_command; lint_imports_command()",
            "--config",
            str(root / "pyproject.toml"),
            "--no-cache",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "xsr", tmp_path / "xsr", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_contracts_are_kept():
    r = _lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # a circle between siblings of one layer (grid <-> conserve)
        ("grid.py", "from . import conserve as _c  # noqa", "layers, from the user inward"),
        # an upward import, hidden inside a function
        (
            "conserve.py",
            "def _up():\n    from . import api  # noqa: F401\n",
            "layers, from the user inward",
        ),
        # xarray below the CF grid description
        ("methods/interp.py", "import xarray as _xr  # noqa", "arrays in, arrays out"),
        # inside the methods: the interface importing the pipeline
        ("methods/base.py", "from . import pipeline as _p  # noqa", "methods: the families"),
    ],
)
def test_a_forbidden_import_breaks_a_contract(tmp_path, module, line, broken):
    root = _copy(tmp_path)
    path = root / "xsr" / module
    path.write_text(path.read_text() + "\n" + line + "\n")
    if module == "grid.py":  # and back: a circle
        other = root / "xsr" / "conserve.py"
        other.write_text(other.read_text() + "\nfrom . import grid as _g  # noqa\n")
    r = _lint(root)
    assert r.returncode != 0, r.stdout
    assert f"{broken}" in r.stdout and "BROKEN" in r.stdout, r.stdout


def test_moved_pipeline_names_still_work_with_a_deprecation_warning():
    import xsr.methods.base as base
    from xsr.methods import pipeline

    with pytest.warns(DeprecationWarning, match="moved to xsr.methods.pipeline.fill_nan"):
        assert base.fill_nan is pipeline.fill_nan
    with pytest.raises(AttributeError):
        _ = base.no_such_name
