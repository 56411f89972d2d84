"""docs/guarantees.md names, for each promise, the test that proves it: those tests exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


def test_every_test_named_in_the_guarantees_exists():
    text = (ROOT / "docs" / "guarantees.md").read_text()
    missing = []
    checked = 0
    for line in text.splitlines():
        current: Path | None = None
        # "tests/test_x.py::name", then "::other" refer to the last file named before them
        for m in re.finditer(r"(tests/test_\w+\.py)|::(\w+)|\(`(\w+)`", line):
            if m.group(1):
                current = ROOT / m.group(1)
                assert current.exists(), f"{m.group(1)} does not exist"
                continue
            name = m.group(2) or m.group(3)
            if current is None or name is None:
                continue
            checked += 1
            if name not in _functions(current):
                missing.append(f"{current.name}::{name}")
    assert checked > 40
    assert not missing, f"docs/guarantees.md names tests that do not exist: {missing}"
