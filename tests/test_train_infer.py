"""Member training and inference end to end on a tiny base: checkpoints, resume, the prior
term, peft-loadable adapters and the logits tables they produce."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
from tinyworld import BASE, INFER, LORA, TRAIN, WORLD

from lorauq.checkpoints import LOG_FILE, STATE_FILE, completed_epochs
from lorauq.config import InferParams, TrainParams
from lorauq.errors import DataError, StoreError
from lorauq.infer import evaluate_member, evaluate_prior
from lorauq.lora import lora_pairs, lora_prior
from lorauq.model import load_base_model
from lorauq.prompt import format_prompt, letter_token_ids
from lorauq.readout import letter_logits
from lorauq.schema import LOGIT_COLUMNS, PRIOR_MEMBER
from lorauq.store import read_logits
from lorauq.tiny.world import WorldSpec, domain_questions, finetune_questions
from lorauq.train import train_member

pytestmark = pytest.mark.slow  # trains models (about 15 s on one core)

EPOCH_FILES = {"adapter_config.json", "adapter_model.safetensors", STATE_FILE}


@pytest.fixture(scope="module")
def world(tiny_base, tiny_tokenizer, tmp_path_factory):
    spec = WorldSpec.from_params(WORLD)
    return {
        "root": tmp_path_factory.mktemp("tiny"),
        "base_dir": tiny_base,
        "tokenizer": tiny_tokenizer,
        "train": finetune_questions(spec),
        "eval": {
            "in_domain": domain_questions("in_domain", spec),
            "unseen": domain_questions("unseen", spec),
        },
    }


def fresh_base(world):
    return load_base_model(str(world["base_dir"]), BASE)


def train(world, member, member_dir, epochs=TRAIN.epochs, frame=None):
    return train_member(
        fresh_base(world),
        world["tokenizer"],
        world["train"] if frame is None else frame,
        member=member,
        member_dir=member_dir,
        lora=LORA,
        train=dataclasses.replace(TRAIN, epochs=epochs),
        progress=False,
    )


@pytest.fixture(scope="module")
def members(world):
    """Members 0 and 1, two epochs each, uninterrupted."""
    out = {}
    for member in (0, 1):
        member_dir = world["root"] / "adapters" / f"member-{member}"
        out[member] = {"dir": member_dir, "logs": train(world, member, member_dir)}
    return out


@pytest.fixture(scope="module")
def logits_dir(world, members):
    folder = world["root"] / "logits"
    evaluate_prior(
        fresh_base(world),
        world["tokenizer"],
        world["eval"],
        folder / "prior.parquet",
        infer=INFER,
        progress=False,
    )
    for member, info in members.items():
        evaluate_member(
            fresh_base(world),
            world["tokenizer"],
            world["eval"],
            info["dir"],
            folder / f"member-{member}.parquet",
            member=member,
            infer=INFER,
            progress=False,
        )
    return folder


def adapter_weights(folder):
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")


# --------------------------------------------------------------------------- training


def test_two_epochs_write_complete_checkpoints(members):
    info = members[0]
    names = sorted(p.name for p in info["dir"].iterdir())
    assert names == ["epoch-1", "epoch-2"]  # no temporary folders left behind
    for epoch in (1, 2):
        files = {p.name for p in (info["dir"] / f"epoch-{epoch}").iterdir()}
        assert files >= EPOCH_FILES
        assert LOG_FILE in files
    assert completed_epochs(info["dir"]) == [1, 2]
    logs = info["logs"]
    assert [log["epoch"] for log in logs] == [1, 2]
    assert all(log["member"] == 0 for log in logs)
    assert all(np.isfinite(log["loss"]) and log["loss"] > 0 for log in logs)
    assert all(log["tokens"] > 0 for log in logs)
    # the prior term starts at zero (B = 0) and is positive once B has moved
    assert 0 < logs[0]["prior"] < logs[1]["prior"]
    config = json.loads((info["dir"] / "epoch-2" / "adapter_config.json").read_text())
    assert config["r"] == LORA.r
    assert config["lora_alpha"] == LORA.alpha
    assert sorted(config["target_modules"]) == ["q_proj", "v_proj"]
    state = torch.load(info["dir"] / "epoch-2" / STATE_FILE, weights_only=True)
    assert state["epoch"] == 2
    assert state["optimizer"]["state"]  # Adam moments are saved for resuming


def test_epochs_change_the_adapter(members):
    one = adapter_weights(members[0]["dir"] / "epoch-1")
    two = adapter_weights(members[0]["dir"] / "epoch-2")
    assert one.keys() == two.keys()
    b_keys = [k for k in one if "lora_B" in k]
    assert len(b_keys) == 2 * BASE.num_hidden_layers
    assert all(one[k].abs().sum() > 0 for k in b_keys)
    assert any(not torch.equal(one[k], two[k]) for k in b_keys)


def test_different_members_different_adapters(members):
    a = adapter_weights(members[0]["dir"] / "epoch-1")
    b = adapter_weights(members[1]["dir"] / "epoch-1")
    assert a.keys() == b.keys()
    for key in a:
        assert not torch.equal(a[key], b[key]), key


def test_lora_prior_equals_manual_sum(world, members):
    from peft import PeftModel

    folder = members[1]["dir"] / "epoch-2"
    model = PeftModel.from_pretrained(fresh_base(world), folder)
    weights = adapter_weights(folder)
    manual = 0.0
    for key, a in weights.items():
        if "lora_A" in key:
            b = weights[key.replace("lora_A", "lora_B")]
            manual += float((b.double() @ a.double()).pow(2).sum())
    assert manual > 0
    assert float(lora_prior(model)) == pytest.approx(manual, rel=1e-5)
    assert len(lora_pairs(model)) == len(weights) // 2
    # and ‖BA‖² is not ‖A‖²‖B‖² or Σ‖B‖²: a wrong formula would miss
    wrong = sum(float(b.pow(2).sum()) for k, b in weights.items() if "lora_B" in k)
    assert wrong != pytest.approx(manual, rel=1e-3)


def test_resume_is_bitwise_identical(world, members, tmp_path):
    member_dir = tmp_path / "member-0"
    first = train(world, 0, member_dir, epochs=1)
    assert completed_epochs(member_dir) == [1]
    assert [log["epoch"] for log in first] == [1]
    resumed = train(world, 0, member_dir, epochs=2)
    assert [log["epoch"] for log in resumed] == [1, 2]
    assert resumed[0] == first[0]  # epoch 1's log is read back, not retrained
    reference = adapter_weights(members[0]["dir"] / "epoch-2")
    got = adapter_weights(member_dir / "epoch-2")
    assert reference.keys() == got.keys()
    for key in reference:
        assert torch.equal(reference[key], got[key]), key
    assert resumed[1]["loss"] == members[0]["logs"][1]["loss"]
    # asking again for what is done trains nothing and rewrites nothing
    stamp = (member_dir / "epoch-2" / "adapter_model.safetensors").stat().st_mtime_ns
    again = train(world, 0, member_dir, epochs=2)
    assert [log["epoch"] for log in again] == [1, 2]
    assert (member_dir / "epoch-2" / "adapter_model.safetensors").stat().st_mtime_ns == stamp


def test_unlabelled_training_row_rejected(world, tmp_path):
    frame = world["train"].copy()
    frame.loc[3, "answer"] = -1
    with pytest.raises(DataError, match=rf"row 4 \(id {frame['id'].iloc[3]!r}\) has no answer"):
        train(world, 0, tmp_path / "member-0", frame=frame)
    assert not (tmp_path / "member-0").exists()


def test_too_long_training_row_rejected(world, tmp_path):
    with pytest.raises(DataError, match=r"over train\.max_length=8"):
        train_member(
            fresh_base(world),
            world["tokenizer"],
            world["train"],
            member=0,
            member_dir=tmp_path / "m",
            lora=LORA,
            train=TrainParams(epochs=1, max_length=8),
            progress=False,
        )


# --------------------------------------------------------------------------- peft without lorauq

_PEFT_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    base_dir, adapter_dir, prompt, letters = sys.argv[1:5]
    letters = json.loads(letters)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), adapter_dir)
    model.eval()
    ids = torch.tensor([tokenizer(prompt)["input_ids"]])
    with torch.no_grad():
        tuned = model(input_ids=ids).logits[0, -1, letters]
        with model.disable_adapter():
            plain = model(input_ids=ids).logits[0, -1, letters]
    print(json.dumps({
        "tuned": tuned.tolist(),
        "plain": plain.tolist(),
        "lora_params": sum("lora_" in name for name, _ in model.named_parameters()),
        "imported_lorauq": any(m.split(".")[0] == "lorauq" for m in sys.modules),
    }))
    """
)


def test_adapter_loads_with_plain_peft(world, members, logits_dir, tmp_path):
    question = world["eval"]["in_domain"].iloc[0]
    prompt = format_prompt(question)
    letters = letter_token_ids(world["tokenizer"], len(question["choices"]))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _PEFT_SCRIPT,
            str(world["base_dir"]),
            str(members[0]["dir"] / "epoch-2"),
            prompt,
            json.dumps(letters),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["imported_lorauq"] is False
    assert result["lora_params"] == 4 * BASE.num_hidden_layers  # A and B on q and v
    tuned, plain = np.asarray(result["tuned"]), np.asarray(result["plain"])
    assert np.abs(tuned - plain).max() > 1e-4  # the adapter is really applied
    # ... and gives the logits lorauq stored for that question
    table = read_logits(logits_dir)
    row = table[
        (table["member"] == 0)
        & (table["epoch"] == 2)
        & (table["eval_set"] == "in_domain")
        & (table["id"] == question["id"])
    ]
    assert len(row) == 1
    stored = row[LOGIT_COLUMNS[: len(letters)]].to_numpy()[0]
    np.testing.assert_allclose(stored, tuned, atol=1e-4)
    prior = table[
        (table["member"] == 0)
        & (table["epoch"] == 0)
        & (table["eval_set"] == "in_domain")
        & (table["id"] == question["id"])
    ]
    np.testing.assert_allclose(prior[LOGIT_COLUMNS[: len(letters)]].to_numpy()[0], plain, atol=1e-4)


# --------------------------------------------------------------------------- inference


def test_logits_tables_shape_and_schema(world, logits_dir):
    prior = read_logits(logits_dir / "prior.parquet")
    n_questions = sum(len(f) for f in world["eval"].values())
    assert set(prior["member"]) == {PRIOR_MEMBER}
    assert set(prior["epoch"]) == {0}
    assert len(prior) == n_questions

    member = read_logits(logits_dir / "member-1.parquet")
    assert set(member["member"]) == {1}
    assert sorted(member["epoch"].unique()) == [1, 2]
    assert len(member) == 2 * n_questions

    table = read_logits(logits_dir)
    members, epochs = [0, 1], [0, 1, 2]
    assert len(table) == len(members) * len(epochs) * n_questions
    counts = table.groupby(["member", "epoch", "eval_set"]).size()
    for m in members:
        for e in epochs:
            for name, frame in world["eval"].items():
                assert counts[(m, e, name)] == len(frame)
    assert set(table["n_choices"]) == {5}
    assert table[LOGIT_COLUMNS[5:]].isna().all().all()
    letters = table[LOGIT_COLUMNS[:5]].to_numpy(dtype=np.float64)
    assert np.isfinite(letters).all()
    # the vocabulary log-normaliser bounds every letter logit from above
    assert (table["logsumexp_vocab"].to_numpy() >= letters.max(axis=1) - 1e-5).all()
    expected_answers = {
        (name, qid): answer
        for name, frame in world["eval"].items()
        for qid, answer in zip(frame["id"], frame["answer"], strict=True)
    }
    got = {(r.eval_set, r.id): r.answer for r in table.itertuples()}
    assert got == expected_answers


def test_prior_rows_equal_across_members_after_broadcast(logits_dir):
    table = read_logits(logits_dir)
    cols = ["eval_set", "id", *LOGIT_COLUMNS, "logsumexp_vocab"]
    zero = [
        table[(table["member"] == m) & (table["epoch"] == 0)][cols].reset_index(drop=True)
        for m in (0, 1)
    ]
    pd.testing.assert_frame_equal(zero[0], zero[1])
    ones = [
        table[(table["member"] == m) & (table["epoch"] == 1)][LOGIT_COLUMNS[:5]].to_numpy()
        for m in (0, 1)
    ]
    assert np.abs(ones[0] - ones[1]).max() > 1e-5  # fine-tuned members do differ


def test_letter_logits_independent_of_batch_budget(world):
    model = fresh_base(world)
    frame = world["eval"]["in_domain"]
    small = letter_logits(
        model,
        world["tokenizer"],
        frame,
        infer=InferParams(max_length=256, batch_tokens=1),
        progress=False,
    )
    large = letter_logits(
        model,
        world["tokenizer"],
        frame,
        infer=InferParams(max_length=256, batch_tokens=100_000),
        progress=False,
    )
    assert small["id"].tolist() == frame["id"].tolist()
    np.testing.assert_allclose(
        small[LOGIT_COLUMNS[:5]].to_numpy(), large[LOGIT_COLUMNS[:5]].to_numpy(), atol=1e-5
    )


def test_missing_member_folder(world, tmp_path):
    with pytest.raises(StoreError, match=r"member-9: no complete epoch checkpoints"):
        evaluate_member(
            fresh_base(world),
            world["tokenizer"],
            world["eval"],
            tmp_path / "member-9",
            tmp_path / "member-9.parquet",
            member=9,
            progress=False,
        )
    assert not (tmp_path / "member-9.parquet").exists()


def test_incomplete_epoch_folder_is_ignored(world, members, tmp_path):
    member_dir = tmp_path / "member-0"
    shutil.copytree(members[0]["dir"] / "epoch-1", member_dir / "epoch-1")
    (member_dir / "epoch-2").mkdir()  # a killed save: no adapter, no state
    (member_dir / "epoch-2" / "adapter_config.json").write_text("{}")
    assert completed_epochs(member_dir) == [1]


def test_empty_eval_set_rejected(world, tmp_path):
    with pytest.raises(DataError, match="the evaluation set is empty"):
        evaluate_prior(
            fresh_base(world),
            world["tokenizer"],
            {"empty": world["eval"]["unseen"].iloc[:0]},
            tmp_path / "prior.parquet",
            progress=False,
        )
