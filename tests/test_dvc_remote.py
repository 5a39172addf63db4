"""Members built on different machines meet through a DVC remote (docs/scaling.md, recipe B).

Three clones of this repository share one local-folder DVC remote and nothing else: no git
push, no merged ``dvc.lock``. Clone A builds the shared stages, the prior and member 0; clone B
builds member 1; each pushes its outputs and DVC's run-cache. Clone C then runs
``dvc repro --pull`` and must restore every fine-tuning and inference stage from the remote
instead of running it, and its metrics must be the ones the pushed logits give.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from workspace import copy_repository
from workspace import sh as _sh

ROOT = Path(__file__).resolve().parents[1]

SMALL = {
    "members": [0, 1],
    "tiny.base.pretrain_steps": 100,
    "tiny.train.epochs": 2,
    "tiny.train.threads": 1,
    "tiny.infer.threads": 1,
}


@pytest.fixture(scope="module")
def machines(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("machines")
    origin, remote = tmp / "origin", tmp / "dvc-remote"
    copy_repository(origin, SMALL)
    _sh(origin, "dvc", "remote", "add", "-d", "shared", str(remote))
    _sh(origin, "git", "commit", "-qam", "a DVC remote")

    clones = {name: tmp / name for name in ("a", "b", "c")}
    for clone in clones.values():
        _sh(tmp, "git", "clone", "-q", str(origin), clone.name)
    logs = {
        "a": _sh(clones["a"], "dvc", "repro", "--pull", "prior", "infer@0"),
        "a-push": _sh(clones["a"], "dvc", "push", "--run-cache"),
        "b": _sh(clones["b"], "dvc", "repro", "--pull", "infer@1"),
        "b-push": _sh(clones["b"], "dvc", "push", "--run-cache"),
        "c": _sh(clones["c"], "dvc", "repro", "--pull"),
    }
    (tmp / "logs.json").write_text(json.dumps(logs, indent=1))
    return {**clones, "logs": tmp / "logs.json"}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("member", [0, 1, 4])
def test_member_stage_needs_only_shared_stages_and_itself(member: int, monkeypatch) -> None:
    """``dvc repro infer@m`` on a fresh machine builds prepare, base, finetune@m, infer@m."""
    from dvc.repo import Repo

    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    with Repo(str(ROOT)) as repo:
        upstream = {s.addressing for s in repo.stage.collect(f"infer@{member}", with_deps=True)}
    assert upstream == {"prepare", "base", f"finetune@{member}", f"infer@{member}"}


def _log(machines, name: str) -> str:
    return json.loads(machines["logs"].read_text())[name]


def _stages(log: str, marker: str) -> set[str]:
    return {line.split("'")[1] for line in log.splitlines() if marker in line}


@pytest.mark.slow
def test_a_member_alone_builds_only_its_chain(machines) -> None:
    log = _log(machines, "b")
    # B takes prepare and base from the remote (A pushed them) and runs member 1's stages only.
    assert _stages(log, "Running stage") == {"finetune@1", "infer@1"}, log
    assert "base" in _stages(log, "is cached")
    assert (machines["b"] / "data" / "prepared" / "train.parquet").is_file()
    assert not (machines["b"] / "data" / "logits" / "member-0.parquet").exists()
    assert not (machines["b"] / "data" / "logits" / "prior.parquet").exists()


@pytest.mark.slow
def test_third_machine_restores_members_instead_of_running_them(machines) -> None:
    log = _log(machines, "c")
    assert _stages(log, "Running stage") == {"figures"}, log
    assert _stages(log, "is cached") >= {"finetune@0", "finetune@1", "infer@0", "infer@1", "prior"}
    a, b, c = machines["a"], machines["b"], machines["c"]
    for member, builder in ((0, a), (1, b)):
        for path in (
            f"data/logits/member-{member}.parquet",
            f"reports/notebooks/02_finetune-member-{member}.ipynb",  # not re-executed: same bytes
            f"data/adapters/member-{member}/epoch-2/adapter_model.safetensors",
        ):
            assert (c / path).read_bytes() == (builder / path).read_bytes(), path
    assert (c / "data/logits/prior.parquet").read_bytes() == (
        a / "data/logits/prior.parquet"
    ).read_bytes()


@pytest.mark.slow
def test_third_machine_metrics_are_those_of_the_pushed_logits(machines, tmp_path) -> None:
    from lorauq.config import load_params
    from lorauq.layout import Layout
    from lorauq.stages.figures import ensemble_logits, headline_metrics

    a, b, c = machines["a"], machines["b"], machines["c"]
    reference = tmp_path / "reference"
    (reference / "data" / "logits").mkdir(parents=True)
    for source, name in ((a, "prior.parquet"), (a, "member-0.parquet"), (b, "member-1.parquet")):
        shutil.copy(source / "data" / "logits" / name, reference / "data" / "logits" / name)
    params = load_params(c / "params.yaml")
    layout = Layout(reference)
    expected = headline_metrics(params, ensemble_logits(params, layout))
    produced = json.loads((c / "reports" / "metrics.json").read_text())
    assert produced == json.loads(json.dumps(expected, sort_keys=True))
    assert produced["config"]["members"] == 2
    # Two members from different seeds disagree somewhere after fine-tuning.
    assert max(v["mutual_information"] for v in produced["final"].values()) > 0
