"""Your model, your data (docs/your-model-and-data.md): a profile that states only what
differs, on the user's own CSV, composed through the defaults layer and run by DVC.

The profile is the one the page shows (its ``own-profile`` block), so the page cannot drift
from what runs. The fast tests compose it in-process; the slow ones run it end to end with
``dvc exp run -S profile=own`` in a copy of the repository and edit its CSV.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import docscan
import pandas as pd
import pytest
import yaml
from workspace import copy_repository, env, sh

from lorauq.compose import DEFAULTS_FILE, compose_params, profile_defaults
from lorauq.config import load_params, resolve_params
from lorauq.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PAGE = "docs/your-model-and-data.md"
LAYER_LINE = "  - profile_defaults@own\n"
# The example files' answers, written as indices and as letters (A, b, (b), …).
TRAIN_ANSWERS = [0, 1, 2, 3, 1, 0, 0, 1, 0, 1, 0, 2, 0, 1, 0, 0]
EVAL_ANSWERS = [0, 1, 2, 3, 0, 0, 1, 0]


def documented_profile() -> dict:
    """The ``own`` profile of the page's ``own-profile`` block."""
    text = (ROOT / PAGE).read_text(encoding="utf-8")
    (block,) = [b for b in docscan.blocks(PAGE, text) if b.marker == "own-profile"]
    return yaml.safe_load(block.text)


def add_profile(root: Path, *, layer: bool = True) -> None:
    """What the page tells a user to do: the profile into params.yaml (active), and its line
    into compose.yaml's defaults list above ``- params``."""
    params = root / "params.yaml"
    raw = yaml.safe_load(params.read_text(encoding="utf-8"))
    raw.update(documented_profile())
    params.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    if layer:
        compose = root / "compose.yaml"
        text = compose.read_text(encoding="utf-8")
        assert "  - params\n" in text
        compose.write_text(text.replace("  - params\n", LAYER_LINE + "  - params\n", 1))


def composition_files(tmp_path: Path) -> Path:
    for name in ("params.yaml", "compose.yaml", DEFAULTS_FILE):
        shutil.copy2(ROOT / name, tmp_path / name)
    return tmp_path


def dvc_param_keys(profile: str, ensemble: str) -> list[str]:
    """Every ``${profile}.…`` key a dvc.yaml stage names, for this profile and ensemble."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    keys = set()
    for stage in stages.values():
        body = stage.get("do", stage)
        for key in body.get("params", []):
            if isinstance(key, str) and key.startswith("${profile}."):
                key = key.replace("${profile}", profile).replace("${item.ensemble}", ensemble)
                keys.add(key)
    return sorted(keys)


def lookup(tree: dict, dotted: str):
    node = tree
    for part in dotted.split("."):
        assert isinstance(node, dict) and part in node, f"{dotted}: no {part!r}"
        node = node[part]
    return node


# --------------------------------------------------------------------------- the layer


def test_the_defaults_layer_is_lorauq_config_s_defaults() -> None:
    layer = yaml.safe_load((ROOT / DEFAULTS_FILE).read_text(encoding="utf-8"))
    assert layer == profile_defaults(), (
        f"{DEFAULTS_FILE} is stale: run `python -m lorauq.compose --write-defaults`"
    )
    assert layer["data"]["world"] == {} and layer["data"]["calibration_fraction"] == 0.0
    assert layer["methods"]["run"] == []
    assert layer["train"]["batch_order"] == "ensemble"


def test_the_documented_profile_states_only_what_differs() -> None:
    """Each key it states differs from the default (or names its own things)."""
    own = documented_profile()["own"]
    defaults = profile_defaults()
    assert "methods" not in own and "world" not in own["data"]
    assert "calibration_fraction" not in own["data"] and "lora" not in own
    for section in ("base", "train", "infer"):
        for key, value in own[section].items():
            assert defaults[section][key] != value, f"{section}.{key} repeats its default"


def test_without_the_layer_composition_stops_at_the_first_missing_key(tmp_path) -> None:
    root = composition_files(tmp_path)
    add_profile(root, layer=False)
    with pytest.raises(ConfigError, match=r"own\.methods\.run"):
        compose_params(root, ["profile=own"])


def test_with_the_layer_every_key_dvc_names_is_there(tmp_path) -> None:
    root = composition_files(tmp_path)
    add_profile(root)
    sparse = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    composed = yaml.safe_load(compose_params(root, ["profile=own"]).read_text(encoding="utf-8"))
    assert composed["profile"] == "own"
    assert composed["ensembles"] == ["main"] and composed["members"] == ["0-1"]
    assert composed["methods"] == []
    keys = dvc_param_keys("own", "main")
    assert "own.data.world" in keys and "own.data.calibration_fraction" in keys
    for key in keys:
        lookup(composed, key)
    own = composed["own"]
    assert own["data"]["world"] == {} and own["data"]["calibration_fraction"] == 0.0
    # the profile's values win over the layer's, key by key; lists are replaced whole
    assert own["base"]["hidden_size"] == 32 and own["base"]["vocab_size"] == 600
    assert own["data"]["train"]["path"] == "data/sources/example/train.csv"
    assert own["data"]["train"]["limit"] is None
    assert own["analysis"]["fig_c"]["epochs"] == [1] and own["analysis"]["fig_c"]["bins"] == 30
    # the shipped profiles are untouched by a line that names another
    for name in ("tiny", "paper", "smol"):
        assert composed[name] == sparse[name]
    # lorauq reads the sparse profile and the composed one as the same experiment
    top = {"profile": "own", "ensembles": ["main"], "members": ["0-1"], "methods": []}
    plain = resolve_params({**sparse, **top})
    assert load_params(root / "params.yaml").as_dict() == plain.as_dict()


def test_the_example_files_read_with_letter_answers() -> None:
    from lorauq.data import load_questions

    train = load_questions("csv", "train", path=ROOT / "data/sources/example/train.csv")
    test = load_questions("csv", "test", path=ROOT / "data/sources/example/eval.csv")
    assert train["answer"].tolist() == TRAIN_ANSWERS
    assert test["answer"].tolist() == EVAL_ANSWERS
    assert (
        set(train["subject"]) == set(test["subject"]) == {"kitchen", "garden", "weather", "travel"}
    )
    assert not set(train["id"]) & set(test["id"])


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def own_run(tmp_path_factory) -> Path:
    """The page's steps in a copy of the repository: profile, compose line, commit,
    ``dvc exp run -S profile=own`` (the whole pipeline on the made-up CSV, tiny base)."""
    repo = copy_repository(tmp_path_factory.mktemp("own") / "repo")
    add_profile(repo)
    sh(repo, "git", "commit", "-qam", "own profile")
    sh(repo, "dvc", "exp", "run", "-S", "profile=own", timeout=1500)
    return repo


@pytest.mark.slow  # runs every stage of the own profile through dvc exp run
def test_own_profile_runs_end_to_end(own_run: Path) -> None:
    params = yaml.safe_load((own_run / "params.yaml").read_text(encoding="utf-8"))
    assert params["profile"] == "own" and params["own"]["data"]["world"] == {}
    prepared = own_run / "data" / "prepared"
    train = pd.read_parquet(prepared / "train.parquet")
    example = pd.read_parquet(prepared / "eval" / "example.parquet")
    assert train["answer"].tolist() == TRAIN_ANSWERS
    assert example["answer"].tolist() == EVAL_ANSWERS
    manifest = json.loads((prepared / "manifest.json").read_text(encoding="utf-8"))
    (read,) = manifest["tables"]["example"]["reads"]
    assert read["path"].endswith("data/sources/example/eval.csv") and read["rows"] == 8
    logits = pd.read_parquet(own_run / "data" / "logits" / "main" / "members-0-1.parquet")
    assert sorted(logits["member"].unique()) == [0, 1]
    assert sorted(logits["epoch"].unique()) == [1]  # epoch 0 lives in prior.parquet
    assert len(logits) == 2 * 8 and logits["n_choices"].eq(4).all()
    assert logits[[f"logit_{c}" for c in "abcd"]].notna().all().all()
    metrics = json.loads((own_run / "reports" / "metrics.json").read_text(encoding="utf-8"))
    final = metrics["main"]["renormalized"]["final"]["example"]
    assert 0.0 <= final["accuracy"] <= 1.0
    assert 0.0 <= final["mutual_information"] <= final["predictive_entropy"] <= 1.3863  # ln 4
    assert (own_run / "reports" / "figures" / "png" / "fig_a_metrics_over_epochs.png").is_file()


@pytest.mark.slow  # needs the reproduced own profile
def test_editing_the_csv_makes_prepare_stale(own_run: Path) -> None:
    before = sh(own_run, "dvc", "status")
    assert not re.search(r"^prepare:", before, flags=re.MULTILINE), before
    csv = own_run / "data" / "sources" / "example" / "eval.csv"
    original = csv.read_bytes()
    try:
        with csv.open("a", encoding="utf-8") as handle:
            handle.write("e09,travel,What do you row?,a boat,a bus,a plane,a lift,A\n")
        after = sh(own_run, "dvc", "status")
        assert re.search(r"^prepare:", after, flags=re.MULTILINE), after
        assert "modified:" in after and "data/sources" in after, after
    finally:
        csv.write_bytes(original)
    assert not re.search(r"^prepare:", sh(own_run, "dvc", "status"), flags=re.MULTILINE)


@pytest.mark.slow  # runs the prepare command as DVC does
def test_prepare_refuses_a_path_outside_data_sources(own_run: Path, tmp_path) -> None:
    outside = tmp_path / "mine.csv"
    shutil.copy2(own_run / "data" / "sources" / "example" / "eval.csv", outside)
    params = own_run / "params.yaml"
    original = params.read_text(encoding="utf-8")
    raw = yaml.safe_load(original)
    raw["own"]["data"]["eval"]["example"]["path"] = str(outside)
    try:
        params.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
        done = subprocess.run(
            [sys.executable, "-m", "lorauq", "prepare"],
            cwd=own_run,
            capture_output=True,
            text=True,
            env=env(own_run),
        )
    finally:
        params.write_text(original, encoding="utf-8")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "own.data.eval.example.path" in done.stderr
    assert "outside data/sources/" in done.stderr
