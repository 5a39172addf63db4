"""An experiment of the smallest shape — one eval set, one member, one epoch — runs
``dvc repro`` to the end: every stage, every declared output, and the figures notebook says
which figures it left out and why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from workspace import copy_repository, sh

pytestmark = pytest.mark.slow

ONE_SET_ONE_MEMBER_ONE_EPOCH = {
    "tiny.members": [0],
    "tiny.ensembles": {"lora_l2": {}},
    "tiny.analysis.reference": "halves",
    "tiny.data.eval.known": None,
    "tiny.data.eval.unseen": None,
    "tiny.data.eval.noisy": None,
    "tiny.base.pretrain_steps": 50,
    "tiny.train.epochs": 1,
    "tiny.methods.checkpoints.last": 1,
    "tiny.train.threads": 1,
    "tiny.infer.threads": 1,
}


def _notebook_text(path: Path) -> str:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return "\n".join(
        "".join(output.get("text", ""))
        for cell in cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream"
    )


def test_one_set_one_member_one_epoch_runs_dvc_repro_to_the_end(tmp_path: Path) -> None:
    repo = copy_repository(tmp_path / "repo", ONE_SET_ONE_MEMBER_ONE_EPOCH)
    sh(repo, "dvc", "repro")
    assert "up to date" in sh(repo, "dvc", "status")
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    final = metrics["lora_l2"]["renormalized"]
    assert set(final["final"]) == {"in_domain"} and metrics["config"]["members"] == 1
    assert final["ood_auroc"] == {"final": {}}
    dvc = yaml.safe_load((repo / "dvc.yaml").read_text())
    for entry in dvc["stages"]["figures"]["plots"]:
        assert (repo / next(iter(entry))).is_file()
    figures = {p.stem for p in (repo / "reports" / "figures" / "png").glob("*.png")}
    assert "fig_a_metrics_over_epochs" in figures
    assert not {"ood_roc", "fig_b_agreement"} & figures
    # every output is either committed (metrics, tables) or ignored by git (DVC's cache)
    status = sh(repo, "git", "status", "--porcelain", "--untracked-files=all").splitlines()
    untracked = [  # DVC's own new .gitignore files aside
        line for line in status if line.startswith("??") and not line.endswith(".gitignore")
    ]
    assert untracked == [], untracked
    printed = _notebook_text(repo / "reports" / "notebooks" / "04_figures.ipynb")
    assert "not drawn: ood_roc: the experiment has one eval set" in printed
    assert "not drawn: fig_b_agreement: one member" in printed
