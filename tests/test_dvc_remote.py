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
import sys
from pathlib import Path

import pytest
from workspace import copy_repository
from workspace import sh as _sh

ROOT = Path(__file__).resolve().parents[1]

SMALL = {
    "tiny.members": [0, 1],
    "tiny.ensembles": {"lora_l2": {}},
    "tiny.analysis.reference": "halves",
    "tiny.base.pretrain_steps": 100,
    "tiny.train.epochs": 2,
    "tiny.methods.run": [],  # members and the figures are what travels between machines here
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
        "a": _sh(clones["a"], "dvc", "repro", "--pull", "prior", "infer@lora_l2-0"),
        "a-push": _sh(clones["a"], "dvc", "push", "--run-cache"),
        "b": _sh(clones["b"], "dvc", "repro", "--pull", "infer@lora_l2-1"),
        "b-push": _sh(clones["b"], "dvc", "push", "--run-cache"),
        "c": _sh(clones["c"], "dvc", "repro", "--pull"),
    }
    (tmp / "logs.json").write_text(json.dumps(logs, indent=1))
    return {**clones, "logs": tmp / "logs.json"}


@pytest.fixture(scope="module")
def paper_repo(tmp_path_factory) -> Path:
    """A copy of the repository composed for the paper profile, as `-S profile=paper` does."""
    repo = copy_repository(tmp_path_factory.mktemp("paper") / "repo")
    _sh(repo, sys.executable, "-m", "lorauq.compose", "profile=paper")
    return repo


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize(("ensemble", "member"), [("lora_l2", 0), ("reg_l2", 1), ("r32", 4)])
def test_member_stage_needs_only_shared_stages_and_itself(
    paper_repo: Path, ensemble: str, member: int, monkeypatch
) -> None:
    """``dvc repro infer@<ensemble>-m`` on a fresh machine builds prepare, base, that member's
    fine-tuning and its inference: nothing of another member or ensemble, not the prior."""
    from dvc.repo import Repo

    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.chdir(paper_repo)  # DVC resolves params.yaml against the working folder
    stage = f"{ensemble}-{member}"
    with Repo(str(paper_repo)) as repo:
        upstream = {s.addressing for s in repo.stage.collect(f"infer@{stage}", with_deps=True)}
    assert upstream == {"prepare", "base", f"finetune@{stage}", f"infer@{stage}"}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_paper_profile_has_a_stage_per_ensemble_and_member(paper_repo: Path, monkeypatch) -> None:
    """The paper's three ensembles of five members: 15 fine-tunings and 15 inferences."""
    from dvc.repo import Repo

    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.chdir(paper_repo)
    with Repo(str(paper_repo)) as repo:
        names = {s.addressing for s in repo.index.stages}
    expected = {f"{e}-{m}" for e in ("lora_l2", "reg_l2", "r32") for m in range(5)}
    assert {n.split("@")[1] for n in names if n.startswith("finetune@")} == expected
    assert {n.split("@")[1] for n in names if n.startswith("infer@")} == expected


def _log(machines, name: str) -> str:
    return json.loads(machines["logs"].read_text())[name]


def _stages(log: str, marker: str) -> set[str]:
    return {line.split("'")[1] for line in log.splitlines() if marker in line}


@pytest.mark.slow
def test_a_member_alone_builds_only_its_chain(machines) -> None:
    log = _log(machines, "b")
    # B takes prepare and base from the remote (A pushed them) and runs member 1's stages only.
    assert _stages(log, "Running stage") == {"finetune@lora_l2-1", "infer@lora_l2-1"}, log
    assert "base" in _stages(log, "is cached")
    assert (machines["b"] / "data" / "prepared" / "train.parquet").is_file()
    assert not (machines["b"] / "data" / "logits" / "lora_l2" / "members-0.parquet").exists()
    assert not (machines["b"] / "data" / "logits" / "prior.parquet").exists()


@pytest.mark.slow
def test_third_machine_restores_members_instead_of_running_them(machines) -> None:
    log = _log(machines, "c")
    assert _stages(log, "Running stage") == {"figures", "methods", "protocol"}, log  # reports
    built = {f"{stage}@lora_l2-{m}" for stage in ("finetune", "infer") for m in (0, 1)}
    assert _stages(log, "is cached") >= built | {"prior"}
    a, b, c = machines["a"], machines["b"], machines["c"]
    for member, builder in ((0, a), (1, b)):
        for path in (
            f"data/logits/lora_l2/members-{member}.parquet",
            f"reports/notebooks/02_finetune-lora_l2-{member}.ipynb",  # not re-executed: same bytes
            f"data/adapters/lora_l2/members-{member}/member-{member}/epoch-2/adapter_model.safetensors",
            # names the base by its relative path: the same bytes in every clone
            f"data/adapters/lora_l2/members-{member}/member-{member}/epoch-2/adapter_config.json",
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
    (reference / "data" / "logits" / "lora_l2").mkdir(parents=True)
    for source, name in (
        (a, "prior.parquet"),
        (a, "lora_l2/members-0.parquet"),
        (b, "lora_l2/members-1.parquet"),
    ):
        shutil.copy(source / "data" / "logits" / name, reference / "data" / "logits" / name)
    params = load_params(c / "params.yaml")
    layout = Layout(reference)
    expected = headline_metrics(params, ensemble_logits(params, layout))
    produced = json.loads((c / "reports" / "metrics.json").read_text())
    assert produced == json.loads(json.dumps(expected, sort_keys=True))
    assert produced["config"]["members"] == 2
    # Two members from different seeds disagree somewhere after fine-tuning.
    final = produced["lora_l2"]["renormalized"]["final"]
    assert max(v["mutual_information"] for v in final.values()) > 0
