"""The numbered notebooks: generated from scripts/make_notebooks.py, parameters documented.

``papermill --help-notebook`` reads each parameter's type from its annotation and its help from
the comment on the same line; a line it cannot parse is silently left out of the help.
"""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EXPECTED = {
    "01_base.ipynb": {"params_file", "overrides", "root"},
    "02_finetune.ipynb": {"params_file", "overrides", "root", "ensemble", "members"},
    "03_inference.ipynb": {"params_file", "overrides", "root", "ensemble", "members"},
    "04_figures.ipynb": {"params_file", "overrides", "root"},
}


def _generator():
    spec = importlib.util.spec_from_file_location(
        "make_notebooks", ROOT / "scripts" / "make_notebooks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_numbered_notebook_is_known() -> None:
    assert [p.name for p in NOTEBOOKS] == sorted(EXPECTED)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_parameter_has_a_type_and_help(path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="papermill"):
        inferred = papermill.inspect_notebook(str(path))
    assert not [r.message for r in caplog.records if "Unable to parse" in r.message]
    assert set(inferred) == EXPECTED[path.name]
    for name, parameter in inferred.items():
        assert parameter["help"].strip(), f"{path.name}: parameter {name!r} has no help comment"
        assert parameter["inferred_type_name"] in {"str", "dict", "int"}, (name, parameter)


def test_help_notebook_command_lists_each_parameter_with_its_help() -> None:
    path = ROOT / "notebooks" / "02_finetune.ipynb"
    done = subprocess.run(
        [sys.executable, "-m", "papermill", "--help-notebook", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = " ".join(done.stdout.split())
    assert 'members: str (default "0") the stage: a member id, or a range like 0-4' in out
    assert 'ensemble: str (default "lora_l2")' in out
    assert 'root: str (default "")' in out
    assert "Unknown type" not in out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_matches_its_generator(path: Path) -> None:
    """Edit scripts/make_notebooks.py and rerun it; never the .ipynb by hand."""
    generator = _generator()
    expected = generator.build(generator.NOTEBOOKS[path.name])
    committed = nbformat.read(path, as_version=4)
    assert [(c.cell_type, c.source) for c in committed.cells] == [
        (c.cell_type, c.source) for c in expected.cells
    ]
    assert all(not c.get("outputs") for c in committed.cells if c.cell_type == "code")
    assert committed.metadata["kernelspec"]["name"] == "python3"
