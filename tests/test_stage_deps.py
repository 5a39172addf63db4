"""Every module a DVC stage runs is among its deps, and no other: a code change reruns exactly
the stages that execute it.

Each stage's module set is derived here, independently of ``dvc.yaml``: the imports of the
stage's notebook (or of ``python -m lorauq``), closed over what those modules import, at the
top or inside functions (a lazy import runs too), with the packages' ``__init__`` files
(:mod:`lorauq.imports`). The set must equal the ``lorauq/`` files the stage lists; for the
``method`` stage, whose runner loads ``lorauq/methods/<name>.py`` by name, the union over the
methods of the registry (each method's own module is its ``${item}`` dep). A second test edits modules in a clone
and asks ``dvc status`` itself which stages changed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lorauq import imports
from lorauq.methods.registry import METHODS

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "lorauq"


def module_closure(entry_imports: set[str]) -> set[Path]:
    """The files of every ``lorauq`` module reachable from ``entry_imports``."""
    return imports.module_closure(entry_imports, ROOT)


def notebook_imports(path: Path) -> set[str]:
    return imports.notebook_imports(path)


def stage_definitions() -> dict[str, dict]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return {name: body.get("do", body) for name, body in stages.items()}


def stage_entry_imports(body: dict) -> set[str]:
    """What a stage's command runs: its notebooks' imports, or ``python -m lorauq``."""
    cmd = body["cmd"]
    found: set[str] = set()
    for notebook in re.findall(r"notebooks/[\w.-]+\.ipynb", cmd):
        if not cmd.split(notebook, 1)[0].rstrip().endswith("papermill"):
            continue  # the executed copy papermill writes, not a notebook that runs
        found |= notebook_imports(ROOT / notebook)
    for module in re.findall(r"python -m (lorauq(?:\.\w+)*)", cmd):
        found.add(f"{PACKAGE}.__main__" if module == PACKAGE else module)
        if module == "lorauq.stages.methods":  # it loads the method's module by name
            found.update(record.module for record in METHODS.values())
    return found


def declared_module_deps(body: dict) -> set[Path]:
    """The ``lorauq/`` files a stage lists (``${item}`` in a method stage: every method)."""
    names = [
        d.replace("${item}", m) if "${item}" in d else d
        for d in body.get("deps", [])
        for m in METHODS
    ]
    deps = {ROOT / d for d in names}
    return {d for d in deps if d.suffix == ".py" and PACKAGE in d.relative_to(ROOT).parts[:1]}


@pytest.mark.parametrize("stage", sorted(stage_definitions()))
def test_stage_deps_are_exactly_the_modules_it_runs(stage: str) -> None:
    body = stage_definitions()[stage]
    entry = stage_entry_imports(body)
    assert entry, f"{stage}: its command runs neither a notebook nor python -m lorauq"
    expected = module_closure(entry)
    declared = declared_module_deps(body)
    relative = sorted(str(p.relative_to(ROOT)) for p in expected)
    assert declared == expected, (
        f"{stage}: missing {sorted(str(p.relative_to(ROOT)) for p in expected - declared)}, "
        f"not run {sorted(str(p.relative_to(ROOT)) for p in declared - expected)}; "
        f"the stage runs exactly {relative}"
    )


def test_plots_and_training_do_not_reach_each_other() -> None:
    """The split the deps rely on: the figures never import training, fine-tuning never
    imports plotting or the sources' loaders."""
    stages = stage_definitions()
    finetune = {p.name for p in module_closure(stage_entry_imports(stages["finetune"]))}
    figures = {p.name for p in module_closure(stage_entry_imports(stages["figures"]))}
    assert not {"plots.py", "analysis.py", "data.py", "world.py"} & finetune
    assert not {"train.py", "model.py", "infer.py", "readout.py", "batching.py"} & figures


def _dvc(cwd: Path, *args: str) -> str:
    dvc = Path(sys.executable).with_name("dvc")
    result = subprocess.run(
        [str(dvc), *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=300
    )
    return result.stdout


def _stages_with_changed_deps(clone: Path) -> set[str]:
    status = json.loads(_dvc(clone, "status", "--json") or "{}")
    changed = set()
    for stage, entries in status.items():
        for entry in entries:
            if isinstance(entry, dict) and "changed deps" in entry:
                changed.add(stage.split(":")[-1])
    return changed


@pytest.mark.slow
@pytest.mark.parametrize(
    "module",
    ["lorauq/plots.py", "lorauq/model.py", "lorauq/store.py", "lorauq/data.py", "lorauq/prompt.py"],
)
def test_dvc_status_reruns_exactly_the_stages_that_run_a_module(
    tmp_path: Path, module: str
) -> None:
    """Checked from outside: append a line to a module in a clone and ask ``dvc status``."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    for name in ("dvc.yaml", "dvc.lock", module):  # the working tree, committed or not
        shutil.copy(ROOT / name, clone / name)
    before = _stages_with_changed_deps(clone)
    with (clone / module).open("a", encoding="utf-8") as handle:
        handle.write("# an appended comment\n")
    after = _stages_with_changed_deps(clone)
    runs = {
        name
        for name, body in stage_definitions().items()
        if ROOT / module in module_closure(stage_entry_imports(body))
    }

    def base(stage: str) -> str:
        return stage.split("@")[0]

    new = after - before
    assert {base(s) for s in new} == runs - {base(s) for s in before}, (new, runs)


def _has_key(tree: dict, dotted: str) -> bool:
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


@pytest.mark.parametrize("profile", ["tiny", "smol", "paper", "protocol"])
def test_every_declared_param_exists_in_every_profile(profile: str) -> None:
    """DVC refuses to run a stage whose declared param is missing from params.yaml, even if
    lorauq has a default for it: every profile spells out every key a stage declares."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    ensembles = list(raw[profile]["ensembles"])
    main = raw[profile]["analysis"]["main"]
    for name, body in stage_definitions().items():
        for entry in body.get("params", []):
            key = next(iter(entry)) if isinstance(entry, dict) else entry
            for ensemble in ensembles:
                for method in METHODS:  # the method stage's ${item}
                    resolved = (
                        key.replace("${profile}", profile)
                        .replace("${item.ensemble}", ensemble)
                        .replace("${item}", method)
                        .replace("${main}", main)
                    )
                    assert _has_key(raw, resolved), f"{name}: {resolved} is not in params.yaml"
