"""The Colab notebook names only files and parameters that exist.

``notebooks/colab_paper.ipynb`` is never run by the tests (it needs a GPU, the hub and Colab),
so the way it breaks is silently: a script renamed, a param key moved, the README badge left
pointing at an old path. Each of those fails here instead: every repository file its shell
lines name must exist, every ``-S key=value`` it hands DVC must resolve through
``lorauq.config`` (a renamed key raises ``ConfigError``), and it must be committed exactly as
``scripts/make_colab_notebook.py`` writes it, without outputs.
"""

from __future__ import annotations

import ast
import re
import shlex
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from lorauq.config import load_params

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "colab_paper.ipynb"
# Paths the notebook creates or reads from Drive, not files of the repository.
GENERATED = ("data/", "reports/", ".dvc/", "/")
REPO_FILE = re.compile(r"^[\w.-]+(/[\w.-]+)*\.(py|txt|yaml|yml|ipynb|toml|lock)$")


@pytest.fixture(scope="module")
def notebook():
    return nbformat.read(NOTEBOOK, as_version=4)


def _generator():
    from workspace import load_script

    return load_script("make_colab_notebook")


def _shell_lines(notebook) -> list[str]:
    """The ``!`` lines of the code cells (IPython shell escapes), without the ``!``."""
    lines = []
    for cell in notebook.cells:
        if cell.cell_type == "code":
            for line in cell.source.splitlines():
                if line.strip().startswith("!"):
                    lines.append(line.strip()[1:])
    return lines


def _string_constants(notebook) -> str:
    """All code, where the dvc arguments live (in ``*_ARGS`` strings)."""
    return "\n".join(c.source for c in notebook.cells if c.cell_type == "code")


def test_valid_and_without_outputs(notebook):
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
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
    [(repo, _branch, path)] = badges
    assert path == NOTEBOOK.relative_to(REPO).as_posix()
    assert (REPO / path).is_file()
    # the notebook clones the repository the badge opens it from
    assert f"https://github.com/{repo}" == _generator().REPO_URL
    assert f'REPO_URL: str = "https://github.com/{repo}"' in _string_constants(notebook)


def test_shell_lines_name_existing_repo_files(notebook):
    named = set()
    for line in _shell_lines(notebook):
        for token in shlex.split(line, comments=True):
            if REPO_FILE.match(token) and not token.startswith(GENERATED):
                named.add(token)
    # the ones the notebook is about must be among them
    assert {"scripts/gpu_check.py", "requirements.txt", "notebooks/02_finetune.ipynb"} <= named
    missing = sorted(name for name in named if not (REPO / name).is_file())
    assert missing == []


def test_never_installs_the_cpu_torch(notebook):
    """Colab's CUDA torch must survive the install cell."""
    assert all("requirements-cpu" not in line for line in _shell_lines(notebook))
    pinned = [
        line
        for line in (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines()
        if re.match(r"^\s*torch\b", line)
    ]
    assert pinned == []


def _dvc_settings(notebook) -> dict[str, list[str]]:
    """Every ``*_ARGS`` string of the notebook as the Hydra overrides ``-S`` passes on."""
    groups: dict[str, str] = {}
    cell = next(c.source for c in notebook.cells if "BF16_ARGS =" in c.source)
    python = "\n".join(line for line in cell.splitlines() if not line.startswith(("!", "%")))
    for node in ast.parse(python).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:  # string constants and sums of them; anything else is not an argument
                value = eval(compile(ast.Expression(node.value), "<args>", "eval"), {}, groups)
            except Exception:
                continue
            if isinstance(value, str):
                groups[node.targets[0].id] = value
    settings = {}
    for name, text in groups.items():
        if name.endswith("_ARGS"):
            tokens = shlex.split(text)
            assert tokens[::2] == ["-S"] * (len(tokens) // 2), text
            settings[name] = tokens[1::2]
    return settings


def _composed(tmp_path, overrides: list[str]):
    """The params a ``dvc exp run -S …`` with ``overrides`` would run: composed in a copy."""
    from workspace import copy_repository, sh

    repo = copy_repository(tmp_path / "repo")
    sh(repo, sys.executable, "-m", "lorauq.compose", *overrides)
    return load_params(repo / "params.yaml")


def test_dvc_settings_are_params_that_resolve(notebook, tmp_path):
    groups = _dvc_settings(notebook)
    assert set(groups) == {"BF16_ARGS", "T4_ARGS", "METHODS_ARGS"}
    assert "dvc exp run {ARGS}" in _shell_lines(notebook)
    bf16 = _composed(tmp_path / "bf16", groups["BF16_ARGS"])
    assert (bf16.profile, bf16.members, list(bf16.ensembles)) == ("paper", [0], ["lora_l2"])
    assert (bf16.base.dtype, bf16.base.quantization) == ("bfloat16", "none")
    t4 = _composed(tmp_path / "t4", groups["T4_ARGS"])
    assert (t4.profile, t4.members, list(t4.ensembles)) == ("paper", [0], ["lora_l2"])
    assert (t4.base.dtype, t4.base.quantization) == ("float16", "4bit")
    # the methods reuse member 0: nothing its stages depend on changes
    methods = _composed(tmp_path / "methods", groups["BF16_ARGS"] + groups["METHODS_ARGS"])
    assert methods.methods.run == ["single", "checkpoints", "laplace"]
    assert methods.members == bf16.members
    assert methods.ensemble("lora_l2") == bf16.ensemble("lora_l2")
    assert (methods.data, methods.base, methods.infer) == (bf16.data, bf16.base, bf16.infer)
    assert "dvc exp run {ARGS}{METHODS_ARGS}" in _shell_lines(notebook)


def test_finetune_resume_command_is_the_dvc_stage_command(notebook):
    """The resume cell runs finetune@lora_l2-0 outside DVC; it must be the stage's command."""
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]["finetune"]
    command = stage["cmd"].replace("${item.ensemble}", "lora_l2").replace("${item.members}", "0")
    assert command in _shell_lines(notebook)
    assert "dvc commit -f finetune@lora_l2-0" in _shell_lines(notebook)
