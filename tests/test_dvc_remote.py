"""Members built on different machines meet through a DVC remote (docs/scaling.md, recipe B).

Three clones of this repository share one local-folder DVC remote and nothing else: no git
push, no merged ``dvc.lock``. Clone A builds the shared stages, the prior and member 0; clone B
builds member 1; each pushes its outputs and DVC's run-cache. Clone C then runs
``dvc repro --pull`` and must restore every fine-tuning and inference stage from the remote
instead of running it, and its metrics must be the ones the pushed logits give.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

SMALL = {
    "members": [0, 1],
    "tiny.base.pretrain_steps": 100,
    "tiny.train.epochs": 2,
    "tiny.train.threads": 1,
    "tiny.infer.threads": 1,
}


def _env(clone: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "GIT_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
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
    return env


def _sh(clone: Path, *args: str) -> str:
    done = subprocess.run(
        args, cwd=clone, env=_env(clone), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, (
        f"{' '.join(args)} failed in {clone.name}:\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout + done.stderr


def _source_files() -> list[str]:
    """Tracked and untracked-but-not-ignored files: the working tree as it is now."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    return [name for name in listed if name and (ROOT / name).is_file()]


def _small_params(path: Path) -> None:
    params = yaml.safe_load(path.read_text())
    for dotted, value in SMALL.items():
        *parents, last = dotted.split(".")
        node = params
        for key in parents:
            node = node[key]
        node[last] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def machines(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("machines")
    origin, remote = tmp / "origin", tmp / "dvc-remote"
    for name in _source_files():
        (origin / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, origin / name)
    _small_params(origin / "params.yaml")
    _sh(origin, "git", "init", "-q")
    _sh(origin, "dvc", "remote", "add", "-d", "shared", str(remote))
    _sh(origin, "git", "add", "-A")
    _sh(origin, "git", "commit", "-qm", "small experiment")

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
    from lorauq.pipeline import Layout, ensemble_logits, write_metrics

    a, b, c = machines["a"], machines["b"], machines["c"]
    reference = tmp_path / "reference"
    (reference / "data" / "logits").mkdir(parents=True)
    for source, name in ((a, "prior.parquet"), (a, "member-0.parquet"), (b, "member-1.parquet")):
        shutil.copy(source / "data" / "logits" / name, reference / "data" / "logits" / name)
    params = load_params(c / "params.yaml")
    layout = Layout(reference)
    expected = write_metrics(params, ensemble_logits(params, layout), layout)
    produced = json.loads((c / "reports" / "metrics.json").read_text())
    assert produced == json.loads(json.dumps(expected, sort_keys=True))
    assert produced["config"]["members"] == 2
    # Two members from different seeds disagree somewhere after fine-tuning.
    assert max(v["mutual_information"] for v in produced["final"].values()) > 0
