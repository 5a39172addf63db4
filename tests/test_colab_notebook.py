"""The Colab notebook as committed: generated, clean, naming only what exists, and safe to
restart after its install cell.

``notebooks/colab_paper.ipynb`` runs end to end only in ``tests/test_colab_papermill.py``
(slow, offline); what would break it silently is checked here on every run: a file its install
lines name renamed, the README badge and the clone URL drifting apart, a later cell leaning on a
variable that a restart of the session has forgotten, ``requirements-colab.txt`` drifting from
``requirements.txt``, and the committed file edited by hand instead of through
``scripts/make_colab_notebook.py``.
"""

from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path

import nbformat
import papermill
import pytest
from IPython.core.inputtransformer2 import TransformerManager

from lorauq import colab

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "colab_paper.ipynb"
#: What requirements.txt pins and a Colab runtime must keep as it ships them.
LEFT_TO_COLAB = {"ipykernel", "ipywidgets", "jupyterlab", "jupytext"}


@pytest.fixture(scope="module")
def notebook():
    return nbformat.read(NOTEBOOK, as_version=4)


def _generator():
    from workspace import load_script

    return load_script("make_colab_notebook")


def _code(notebook) -> list:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def _install_cell(notebook):
    (cell,) = [c for c in _code(notebook) if "requirements-colab.txt" in c.source]
    return cell


def test_valid_and_without_outputs(notebook):
    nbformat.validate(notebook)
    for cell in _code(notebook):
        assert cell.outputs == [], cell.id
        assert cell.execution_count is None, cell.id
    assert notebook.metadata["accelerator"] == "GPU"


def test_committed_as_the_generator_writes_it(notebook):
    """Edits go to scripts/make_colab_notebook.py; a hand-edited .ipynb fails here."""
    written = nbformat.writes(_generator().build())
    assert written.rstrip("\n") == NOTEBOOK.read_text(encoding="utf-8").rstrip("\n")


def test_readme_badge_opens_this_notebook_of_the_cloned_repo(notebook):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    badges = re.findall(
        r"\(https://colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)/blob/([\w.-]+)/"
        r"([\w./-]+\.ipynb)\)",
        readme,
    )
    assert len(badges) == 1, badges
    [(repo, branch, path)] = badges
    assert "OWNER" not in repo
    assert path == NOTEBOOK.relative_to(REPO).as_posix()
    assert (REPO / path).is_file()
    # the notebook clones the repository (and branch) the badge opens it from
    assert f"https://github.com/{repo}" == _generator().REPO_URL
    [parameters] = [c for c in _code(notebook) if "parameters" in c.metadata.get("tags", [])]
    assert f'REPO_URL: str = "https://github.com/{repo}"' in parameters.source
    assert f'REVISION: str = "{branch}"' in parameters.source


def test_parameters_are_the_settings_the_install_cell_saves(notebook):
    """Every parameter reaches ``python -m lorauq.colab save`` or the install lines."""
    [parameters] = [c for c in _code(notebook) if "parameters" in c.metadata.get("tags", [])]
    names = re.findall(r"^([A-Z_]+): ", parameters.source, flags=re.MULTILINE)
    assert names == [
        "REPO_URL",
        "REVISION",
        "RUN",
        "ON_COLAB",
        "OFFLINE",
        "SAVE",
        "WORKDIR",
        "EPOCHS",
        "QUESTIONS",
        "METHODS",
    ]
    # papermill -p sets each of them (it infers them from the cell: a comment it cannot
    # parse would drop a parameter silently)
    assert list(papermill.inspect_notebook(str(NOTEBOOK))) == names
    install = _install_cell(notebook).source
    for name in names:
        assert "{" + name in install or f"in {name}" in install or f"if {name}" in install, name
    # the defaults are the Settings' defaults: a Colab user who changes nothing runs those
    namespace: dict = {}
    exec(parameters.source, namespace)
    defaults = colab.Settings()
    assert (namespace["RUN"], namespace["ON_COLAB"], namespace["OFFLINE"]) == (
        defaults.run,
        defaults.on_colab,
        defaults.offline,
    )
    assert (namespace["SAVE"], namespace["EPOCHS"], namespace["QUESTIONS"]) == (
        defaults.save,
        defaults.epochs,
        defaults.questions,
    )
    assert namespace["METHODS"] == defaults.methods
    assert namespace["RUN"] in colab.RUNS


def _python(cell_source: str) -> ast.Module:
    """A cell as IPython runs it (``!``, ``%`` lines become calls), parsed."""
    return ast.parse(TransformerManager().transform_cell(cell_source))


def _free_names(tree: ast.Module) -> set[str]:
    """Names a cell reads that it neither assigns, imports nor gets from builtins."""
    bound = set(dir(builtins)) | {"get_ipython", "display"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    read = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return read - bound


def test_no_cell_after_the_install_needs_a_variable_of_another(notebook):
    """A restart (pip replacing numpy) forgets every variable: each later cell derives what it
    needs itself, from ``colab.session()``."""
    cells = _code(notebook)
    after = cells[cells.index(_install_cell(notebook)) + 1 :]
    assert len(after) >= 8
    for cell in after:
        tree = _python(cell.source)
        assert _free_names(tree) == set(), cell.source
        assert "colab.session()" in cell.source, cell.source
        # the shell lines of later cells go through colab.sh, which fails loudly
        assert not re.search(r"^\s*[!%]", cell.source, flags=re.MULTILINE), cell.source


def test_install_lines_name_existing_repo_files(notebook):
    source = _install_cell(notebook).source
    named = set(re.findall(r"\{WORKDIR\}/([\w./-]+)", source))
    assert named == {
        "requirements-colab.txt",
        "requirements-smol.txt",
        "requirements-laplace.txt",
        ".git",
    }
    assert all((REPO / name).exists() for name in named - {".git"})
    assert "python -m lorauq.colab save" in source


def _requirements(name: str) -> dict[str, str]:
    """``{package: the requirement line}`` of a requirements file (comments dropped)."""
    found = {}
    for line in (REPO / name).read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            package = re.match(r"[A-Za-z0-9_.-]+", line).group(0).lower()
            found[package] = line
    return found


def test_requirements_colab_is_requirements_txt_less_what_colab_ships():
    colab_pins = _requirements("requirements-colab.txt")
    pins = _requirements("requirements.txt")
    assert "torch" not in colab_pins and not LEFT_TO_COLAB & set(colab_pins)
    for package, line in colab_pins.items():
        assert pins.get(package) == line, f"{package}: {line} here, {pins.get(package)} there"
    assert set(pins) - set(colab_pins) == LEFT_TO_COLAB


def test_never_installs_the_cpu_torch_nor_colab_s_front_end(notebook):
    """Colab's CUDA torch, kernel and widgets must survive the install cell."""
    source = "\n".join(c.source for c in _code(notebook))
    assert "requirements-cpu" not in source
    assert "requirements.txt" not in source.replace("requirements-colab.txt", "")
    assert "requirements-dev" not in source


def test_the_table_times_are_the_estimates(notebook):
    intro = notebook.cells[0].source
    doc = (REPO / "docs" / "colab.md").read_text(encoding="utf-8")
    for run, card in (("one_member", "T4"), ("one_member", "L4"), ("ensemble", "A100")):
        train, evaluate = colab.estimate_hours(run, card)
        row = next(line for line in intro.splitlines() if f"`{run}` | {card} " in line)
        assert f"≈ {train + evaluate:.1f} h" in row, row
        row = next(line for line in doc.splitlines() if f"`{run}` | {card} " in line)
        assert f"≈ {train + evaluate:.1f} h ({train:.1f} h" in row, row
        assert f", {evaluate:.1f} h" in row, row
    train, evaluate = colab.estimate_hours("ensemble", "H100")
    row = next(line for line in doc.splitlines() if "`ensemble` | H100 " in line)
    assert f"≈ {train + evaluate:.1f} h ({train:.1f} h, {evaluate:.1f} h)" in row, row
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    [colab_row] = [r for r in readme.splitlines() if r.startswith("| Colab |") and "badge" in r]
    for run, card in (("one_member", "T4"), ("ensemble", "A100")):
        assert f"≈ {sum(colab.estimate_hours(run, card)):.1f} h" in colab_row, colab_row
