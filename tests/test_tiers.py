"""The README's two test commands, and the suite run from outside the repository root.

``make test`` runs every test (CI runs it); ``make test-fast`` leaves out the ones marked
``slow``. pytest's ``pythonpath`` puts the repository and ``tests/`` on ``sys.path`` however
pytest is started, so ``from benchmarks import run`` and the test helpers import from any
working directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from workspace import without_outer_make

ROOT = Path(__file__).resolve().parents[1]


def test_make_test_runs_every_tier_and_test_fast_leaves_out_slow() -> None:
    dry_run = subprocess.run(
        ["make", "-n", "test", "test-fast"],
        cwd=ROOT,
        env=without_outer_make(),  # CI runs this inside `make test PYTEST_ARGS=…`
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    commands = [line for line in dry_run.splitlines() if " -m pytest" in line]
    assert commands == [
        ".venv/bin/python -m pytest -q",
        '.venv/bin/python -m pytest -q -m "not slow"',
    ]


def test_a_test_module_runs_from_another_directory(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "not slow",
            str(ROOT / "tests" / "test_benchmark_run.py"),  # from benchmarks import run
            str(ROOT / "tests" / "test_world_margins.py"),  # from world_bars import …
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "4 passed, 3 deselected" in done.stdout
