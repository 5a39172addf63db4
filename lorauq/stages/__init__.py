"""The pipeline's stages, one module each: what each ``dvc.yaml`` stage (and its notebook) runs.

A stage module imports only the code its stage executes, so ``dvc.yaml`` can list exactly
those modules as the stage's dependencies: a change to the plotting code reruns the figures,
not the fine-tuning (``tests/test_stage_deps.py`` keeps the two in step).
"""

from __future__ import annotations

import os
from pathlib import Path

from lorauq.config import Params, load_params
from lorauq.layout import Layout, find_root

__all__ = ["open_experiment"]


def open_experiment(
    root: str | Path = "", params_file: str = "params.yaml", overrides: dict | None = None
) -> tuple[Params, Layout]:
    """A notebook's set-up: the repository root found, made the working folder, params loaded.

    Every path in params.yaml and dvc.yaml is relative to the root, and a notebook runs from
    ``notebooks/`` in JupyterLab but from the root under papermill, hence the ``chdir``.
    One function, so the four notebooks' first cell cannot drift apart.
    """
    found = find_root(root)
    os.chdir(found)
    params = load_params(found / params_file, overrides or {})
    print(f"profile={params.profile} members={params.members}")
    return params, Layout(found)
