"""A copy of this repository's working tree in a temporary folder, and commands run in it.

Tests that run ``dvc`` (repro, status, push) must not touch the real workspace: they copy
the tracked and untracked-but-not-ignored files (the working tree as it is now, committed or
not) into a fresh git repository and run the commands there, offline, single-threaded, with
the copy's own ``lorauq`` on the path.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


#: What an outer ``make`` (``make test PYTEST_ARGS=…``, as CI runs it) hands down to every
#: command below it: a ``make`` a test starts would inherit its variables.
OUTER_MAKE = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "MAKEFILES")


def without_outer_make(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``environ`` (default: this process's) less what an outer ``make`` passed down, so a
    ``make`` a test runs sees only the Makefile and its own arguments: make's own variables,
    and each variable set on the outer command line (``PYTEST_ARGS=…``), which make both lists
    in ``MAKEFLAGS`` after ``--`` and exports by itself."""
    source = os.environ if environ is None else environ
    flags = source.get("MAKEFLAGS", "")
    padded = f" {flags} "
    given = padded.split(" -- ", 1)[1] if " -- " in padded else ""
    named = set(re.findall(r"(?:^|(?<=[^\\]) )([A-Za-z_][A-Za-z0-9_]*)=", given))
    return {k: v for k, v in source.items() if k not in OUTER_MAKE and k not in named}


def env(clone: Path) -> dict[str, str]:
    """The environment of a command in ``clone``: offline, one thread, the clone's lorauq."""
    variables = {
        k: v for k, v in without_outer_make().items() if not k.startswith(("DVC_", "GIT_"))
    }
    variables.update(
        PATH=f"{BIN}{os.pathsep}{variables.get('PATH', '')}",
        PYTHONPATH=str(clone),  # the clone's lorauq, not an installed one
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        DVC_NO_ANALYTICS="1",
        MPLBACKEND="Agg",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        GIT_AUTHOR_NAME="lorauq test",
        GIT_AUTHOR_EMAIL="test@example.invalid",
        GIT_COMMITTER_NAME="lorauq test",
        GIT_COMMITTER_EMAIL="test@example.invalid",
    )
    return variables


def sh(clone: Path, *args: str, timeout: int = 900) -> str:
    """Run a command in ``clone``; its stdout and stderr, or an assertion naming both."""
    done = subprocess.run(
        args, cwd=clone, env=env(clone), capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, (
        f"{' '.join(args)} failed in {clone.name}:\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout + done.stderr


def source_files() -> list[str]:
    """Tracked and untracked-but-not-ignored files: the working tree as it is now."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    return [name for name in listed if name and (ROOT / name).is_file()]


def set_params(path: Path, overrides: Mapping[str, Any]) -> None:
    """Set dotted keys (``tiny.train.epochs``) in a params file; ``None`` deletes the key."""
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    for dotted, value in overrides.items():
        *parents, last = dotted.split(".")
        node = params
        for key in parents:
            node = node[key]
        if value is None:
            del node[last]
        else:
            node[last] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def copy_repository(dest: Path, overrides: Mapping[str, Any] | None = None) -> Path:
    """The working tree copied to ``dest`` as a one-commit git repository, params adjusted."""
    for name in source_files():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    if overrides:
        set_params(dest / "params.yaml", overrides)
        # what `dvc exp run` does: the profile's stage lists copied to the top level
        sh(dest, sys.executable, "-m", "lorauq.compose")
    sh(dest, "git", "init", "-q")
    sh(dest, "git", "add", "-A")
    sh(dest, "git", "commit", "-qm", "experiment")
    return dest


def reproduced_copy(dest: Path, overrides: Mapping[str, Any] | None = None) -> Path:
    """:func:`copy_repository` after a whole ``dvc repro`` of its experiment."""
    repo = copy_repository(dest, overrides)
    sh(repo, "dvc", "repro", timeout=1500)
    return repo


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module: the scripts are not a package, tests call into them."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The smallest experiment that still runs every notebook: two members (Fig B compares halves),
# one epoch, a base of a few thousand parameters.
QUICK = {
    "tiny.members": [0, 1],
    "tiny.ensembles": {"lora_l2": {}},
    "tiny.analysis.reference": "halves",
    "tiny.base.hidden_size": 32,
    "tiny.base.intermediate_size": 64,
    "tiny.base.num_hidden_layers": 1,
    "tiny.base.pretrain_steps": 20,
    "tiny.train.epochs": 1,
    "tiny.methods.checkpoints.last": 1,  # a snapshot of the one epoch there is
    "tiny.train.threads": 1,
    "tiny.infer.threads": 1,
}
