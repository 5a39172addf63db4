"""Members trained together (``lorauq.joint``) and evaluated together
(``evaluate_members`` with ``infer.joint``) equal members trained and evaluated one by one
(``train_member``, ``evaluate_members`` in turn) to float rounding: per-epoch losses, adapter
tensors, optimiser state, RNG state and letter logits, for two epochs with LoRA dropout on.
The checkpoints are ``train_member``'s, file for file: plain peft loads them, and either
function resumes the other's run. The joint table is the in-turn table, row for row.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tinyworld as tw
import torch

from lorauq.batching import collate_left, last_position_logits
from lorauq.checkpoints import ADAPTER_FILE, LOG_FILE, STATE_FILE, completed_epochs
from lorauq.errors import ConfigError, StoreError
from lorauq.infer import evaluate_member, evaluate_members, parts_dir
from lorauq.joint import train_members
from lorauq.model import load_base_model
from lorauq.readout import letter_logits
from lorauq.schema import LOGIT_COLUMNS
from lorauq.stacked import Route, StackedLora
from lorauq.store import read_logits
from lorauq.train import batch_order_stream, train_member

pytestmark = pytest.mark.slow  # trains 3 members twice each, plus resumes (~25 s on one core)

MEMBERS = [0, 1, 2]  # three, so the members' short last batches fall on different steps
LORA = dataclasses.replace(tw.LORA, dropout=0.1)  # dropout on: each member's RNG is exercised
TRAIN = tw.TRAIN
JOINT = dataclasses.replace(tw.INFER, joint=True)
IN_TURN = dataclasses.replace(tw.INFER, joint=False)
# Measured on CPU (float32): adapters differ by ≤ 7e-8 with entries ~0.25, losses by ≤ 2e-7,
# letter logits by ≤ 5e-7. The bounds leave a decade of room; a wrong mask, seed, batch or
# clip moves them by 1e-3 or more.
ADAPTER_TOL = {"rtol": 1e-5, "atol": 1e-6}
# An ensemble's own batch order (train.batch_order: ensemble): joint and apart must both use it.
ORDER_STREAM = batch_order_stream(TRAIN, "r32")
LOGIT_ATOL = 1e-5
VALUES = [*LOGIT_COLUMNS[:5], "logsumexp_vocab"]


@pytest.fixture(scope="module")
def world(tiny_base, tiny_tokenizer, tmp_path_factory):
    return {
        "root": tmp_path_factory.mktemp("joint"),
        "base_dir": tiny_base,
        "tokenizer": tiny_tokenizer,
        "train": tw.train_set(),
        "eval": {"in_domain": tw.eval_set("in_domain"), "unseen": tw.eval_set("unseen")},
    }


def fresh_base(world):
    return load_base_model(str(world["base_dir"]), tw.BASE)


def dirs(root: Path, members=MEMBERS) -> dict[int, Path]:
    return {m: root / f"member-{m}" for m in members}


def joint(world, root: Path, members=MEMBERS, epochs=TRAIN.epochs, base=None, lora=LORA):
    return train_members(
        base if base is not None else fresh_base(world),
        world["tokenizer"],
        world["train"],
        dirs(root, members),
        lora=lora,
        train=dataclasses.replace(TRAIN, epochs=epochs),
        progress=False,
        order_stream=ORDER_STREAM,
    )


def separate(world, member: int, member_dir: Path, epochs=TRAIN.epochs):
    return train_member(
        fresh_base(world),
        world["tokenizer"],
        world["train"],
        member=member,
        member_dir=member_dir,
        lora=LORA,
        train=dataclasses.replace(TRAIN, epochs=epochs),
        progress=False,
        order_stream=ORDER_STREAM,
    )


@pytest.fixture(scope="module")
def runs(world):
    root = world["root"]
    sep = {m: separate(world, m, root / "separate" / f"member-{m}") for m in MEMBERS}
    base = fresh_base(world)
    together = joint(world, root / "joint", base=base)
    assert list(together) == MEMBERS
    return {"separate": sep, "joint": together, "base": base}


def assert_adapters_close(a_dir: Path, b_dir: Path, **tol) -> None:
    a, b = tw.adapter_tensors(a_dir), tw.adapter_tensors(b_dir)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], **(tol or ADAPTER_TOL), msg=key)


def assert_adapters_equal(a_dir: Path, b_dir: Path) -> None:
    a, b = tw.adapter_tensors(a_dir), tw.adapter_tensors(b_dir)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), (a_dir, key)


# --------------------------------------------------------------------------- the layer


def test_route_split_merge_round_trip_with_unequal_groups():
    route = Route(slots=[0, 2, 1], counts=[2, 3, 1])
    x = torch.randn(6, 4, 5)
    split = route.split(x)
    assert split.shape == (3, 3 * 4, 5)  # padded to the largest group
    padded = split.reshape(3, 3, 4, 5)
    assert torch.equal(padded[0, :2], x[:2]) and torch.equal(padded[1], x[2:5])
    assert torch.equal(padded[2, :1], x[5:]) and not padded[2, 1:].any()
    assert torch.equal(route.merge(split, 4), x)
    equal = Route(slots=[0, 1], counts=[3, 3])
    y = torch.randn(6, 4, 5)
    assert equal.split(y).data_ptr() == y.data_ptr()  # equal groups: a view, no copy
    assert torch.equal(equal.merge(equal.split(y), 4), y)


def test_stacked_layer_routes_each_row_to_its_member(world):
    """Rows of members 0 and 2 in one pass (2 and 3 rows: the padded layout) get what each
    member's own peft model gives them, and the base is put back afterwards."""
    from peft import get_peft_model, set_peft_model_state_dict

    from lorauq.lora import lora_config

    base = fresh_base(world)
    sequences = encoded_questions(world, 5)
    before = {n: type(m) for n, m in base.named_modules()}
    with StackedLora(base, lambda m: get_peft_model(base, lora_config(LORA)), [0, 1, 2]) as stack:
        with torch.no_grad():
            for slot in range(3):  # members that really differ: B away from zero
                for _, b in stack.pairs(slot):
                    b.normal_(std=0.1, generator=torch.Generator().manual_seed(slot))
        weights = {slot: stack.state_dict(slot) for slot in (0, 2)}
        with torch.no_grad(), stack.routed(Route([0, 2], [2, 3])):
            together = last_position_logits(base, *collate_left(sequences, 0))
    assert {n: type(m) for n, m in base.named_modules()} == before
    for slot, rows in ((0, slice(0, 2)), (2, slice(2, 5))):
        model = get_peft_model(fresh_base(world), lora_config(LORA)).eval()
        set_peft_model_state_dict(model, weights[slot])
        with torch.no_grad():
            alone = last_position_logits(model, *collate_left(sequences[rows], 0))
        torch.testing.assert_close(together[rows], alone, rtol=1e-5, atol=1e-5)
    assert (together[0] - together[2]).abs().max() > 1e-2  # the members really differ


def encoded_questions(world, n: int) -> list[list[int]]:
    from lorauq.prompt import encode_prompts

    frame = world["eval"]["in_domain"].head(n)
    return encode_prompts(world["tokenizer"], frame.to_dict("records"), "paper")


def test_initial_adapters_are_peft_s_for_each_seed(world):
    from peft import get_peft_model_state_dict

    from lorauq.lora import attach_lora

    base = fresh_base(world)
    with StackedLora(base, lambda m: attach_lora(base, LORA, seed=m), [3, 7]) as stack:
        stacked = {m: stack.state_dict(slot) for slot, m in enumerate([3, 7])}
        rng = {m: stack.rng_state(slot) for slot, m in enumerate([3, 7])}
    for member in (3, 7):
        model = attach_lora(fresh_base(world), LORA, seed=member)
        after = torch.get_rng_state()
        own = get_peft_model_state_dict(model)
        assert own.keys() == stacked[member].keys()
        for key in own:
            assert torch.equal(own[key], stacked[member][key]), key
        assert torch.equal(after, rng[member])  # the dropout RNG starts where peft's left it


# --------------------------------------------------------------------------- training


def test_joint_training_equals_training_apart(world, runs):
    root = world["root"]
    for member in MEMBERS:
        sep, together = runs["separate"][member], runs["joint"][member]
        assert [log["epoch"] for log in together] == [1, 2]
        for a, b in zip(sep, together, strict=True):
            assert b["member"] == a["member"] == member
            assert b["tokens"] == a["tokens"]  # the same batches
            assert b["loss"] == pytest.approx(a["loss"], rel=1e-6)
            assert b["prior"] == pytest.approx(a["prior"], rel=1e-5)
        for epoch in (1, 2):
            a_dir = root / "separate" / f"member-{member}" / f"epoch-{epoch}"
            b_dir = root / "joint" / f"member-{member}" / f"epoch-{epoch}"
            assert_adapters_close(a_dir, b_dir)
            a_state = torch.load(a_dir / STATE_FILE, weights_only=True)
            b_state = torch.load(b_dir / STATE_FILE, weights_only=True)
            assert a_state.keys() == b_state.keys()
            # each member drew exactly its own dropout masks from its own RNG
            assert torch.equal(a_state["torch_rng"], b_state["torch_rng"])
            a_opt, b_opt = a_state["optimizer"], b_state["optimizer"]
            assert a_opt["param_groups"] == b_opt["param_groups"]
            assert a_opt["state"].keys() == b_opt["state"].keys()
            for i, moments in a_opt["state"].items():
                assert torch.equal(moments["step"], b_opt["state"][i]["step"])
                for name in ("exp_avg", "exp_avg_sq"):
                    # near-zero moments differ by rounding only: the floor scales with the
                    # tensor (on one AMD EPYC an exp_avg_sq entry moved 8.9e-9 at atol 1e-9)
                    scale = float(moments[name].abs().max())
                    torch.testing.assert_close(
                        b_opt["state"][i][name], moments[name], rtol=1e-4, atol=1e-5 * scale
                    )
    # controls: members differ from each other, and training moved them
    first = tw.adapter_tensors(root / "joint" / "member-0" / "epoch-2")
    other = tw.adapter_tensors(root / "joint" / "member-1" / "epoch-2")
    assert all(not torch.equal(first[k], other[k]) for k in first)
    assert all(first[k].abs().max() > 1e-3 for k in first if "lora_B" in k)


def test_joint_checkpoints_have_train_member_s_files(world, runs):
    root = world["root"]
    for member in MEMBERS:
        assert completed_epochs(root / "joint" / f"member-{member}") == [1, 2]
        for epoch in (1, 2):
            a_dir = root / "separate" / f"member-{member}" / f"epoch-{epoch}"
            b_dir = root / "joint" / f"member-{member}" / f"epoch-{epoch}"
            names = {p.name for p in b_dir.iterdir()}
            assert names == {p.name for p in a_dir.iterdir()}  # the same files either way
            assert names == {"adapter_config.json", ADAPTER_FILE, STATE_FILE, LOG_FILE}
            config_a = json.loads((a_dir / "adapter_config.json").read_text())
            config_b = json.loads((b_dir / "adapter_config.json").read_text())
            for config in (config_a, config_b):
                config["target_modules"] = sorted(config["target_modules"])  # a set in peft
            assert config_b == config_a
            log = json.loads((b_dir / LOG_FILE).read_text())
            assert log == runs["joint"][member][epoch - 1]
    # no temporaries left, and the base given in is the base given back
    assert all(not p.name.startswith(".") for p in (root / "joint").rglob("*"))
    assert not any("lora" in n.lower() for n, _ in runs["base"].named_modules())
    assert not runs["base"].training


def test_joint_checkpoint_loads_with_plain_peft_and_gives_the_same_logits(world, runs):
    from peft import PeftModel

    folder = world["root"] / "joint" / "member-2" / "epoch-2"
    model = PeftModel.from_pretrained(fresh_base(world), folder)
    model.eval()
    frame = world["eval"]["in_domain"]
    by_peft = letter_logits(model, world["tokenizer"], frame, infer=tw.INFER, progress=False)
    base = fresh_base(world)
    by_base = letter_logits(base, world["tokenizer"], frame, infer=tw.INFER, progress=False)
    out = world["root"] / "peft-check" / "members-1-2.parquet"
    evaluate_members(  # jointly: two members, so the stacked path runs
        fresh_base(world),
        world["tokenizer"],
        {"in_domain": frame},
        dirs(world["root"] / "joint", [1, 2]),
        out,
        infer=JOINT,
        progress=False,
    )
    stored = read_logits(out)
    stored = stored[(stored["member"] == 2) & (stored["epoch"] == 2)].reset_index(drop=True)
    np.testing.assert_allclose(
        stored[VALUES].to_numpy(), by_peft[VALUES].to_numpy(), rtol=0, atol=LOGIT_ATOL
    )
    # the adapter is really applied
    assert np.abs(by_peft[VALUES].to_numpy() - by_base[VALUES].to_numpy()).max() > 1e-3


def test_resume_of_a_joint_run_is_bitwise_identical(world, runs, tmp_path):
    first = joint(world, tmp_path, epochs=1)
    assert [[log["epoch"] for log in logs] for logs in first.values()] == [[1]] * 3
    resumed = joint(world, tmp_path, epochs=2)
    reference = world["root"] / "joint"
    for member in MEMBERS:
        assert without_time(resumed[member]) == without_time(runs["joint"][member])
        for epoch in (1, 2):
            assert_adapters_equal(
                reference / f"member-{member}" / f"epoch-{epoch}",
                tmp_path / f"member-{member}" / f"epoch-{epoch}",
            )


def without_time(logs: list[dict]) -> list[dict]:
    return [{k: v for k, v in log.items() if k != "elapsed_s"} for log in logs]


def test_members_at_different_epochs_replay_the_same_passes(world, runs, tmp_path):
    """Member 0 has epoch 2, members 1 and 2 only epoch 1 (a kill between saves): the rerun
    replays epoch 2 for all three and ends bitwise equal to the uninterrupted run, without
    rewriting member 0's epoch 2."""
    reference = world["root"] / "joint"
    for member in MEMBERS:
        shutil.copytree(
            reference / f"member-{member}" / "epoch-1", tmp_path / f"member-{member}" / "epoch-1"
        )
    shutil.copytree(reference / "member-0" / "epoch-2", tmp_path / "member-0" / "epoch-2")
    stamp = (tmp_path / "member-0" / "epoch-2" / ADAPTER_FILE).stat().st_mtime_ns
    logs = joint(world, tmp_path)
    assert [[log["epoch"] for log in member_logs] for member_logs in logs.values()] == [[1, 2]] * 3
    assert (tmp_path / "member-0" / "epoch-2" / ADAPTER_FILE).stat().st_mtime_ns == stamp
    for member in MEMBERS:
        assert_adapters_equal(
            reference / f"member-{member}" / "epoch-2", tmp_path / f"member-{member}" / "epoch-2"
        )


def test_train_member_resumes_a_joint_checkpoint_and_back(world, runs, tmp_path):
    """The checkpoints are one format: a member trained jointly for epoch 1 and alone for
    epoch 2 (and the other way round) matches the member trained apart throughout."""
    reference = world["root"] / "separate" / "member-1" / "epoch-2"
    shutil.copytree(world["root"] / "joint" / "member-1" / "epoch-1", tmp_path / "a" / "epoch-1")
    logs = separate(world, 1, tmp_path / "a")
    assert [log["epoch"] for log in logs] == [1, 2]
    assert_adapters_close(reference, tmp_path / "a" / "epoch-2")
    root_b = tmp_path / "b"
    shutil.copytree(
        world["root"] / "separate" / "member-1" / "epoch-1", root_b / "member-1" / "epoch-1"
    )
    joint(world, root_b, members=[1])
    assert_adapters_close(reference, root_b / "member-1" / "epoch-2")


def test_bad_member_lists_are_rejected(world, tmp_path):
    with pytest.raises(ConfigError, match=r"train_members: no members given"):
        joint(world, tmp_path, members=[])
    with pytest.raises(ConfigError, match=r"gradient_checkpointing with lora\.dropout"):
        train_members(
            fresh_base(world),
            world["tokenizer"],
            world["train"],
            {0: tmp_path / "m0"},
            lora=LORA,
            train=dataclasses.replace(TRAIN, gradient_checkpointing=True),
            progress=False,
        )
    assert not any(tmp_path.iterdir())


def test_checkpoint_of_another_lora_config_names_the_folder(world, runs, tmp_path):
    shutil.copytree(world["root"] / "joint" / "member-0", tmp_path / "member-0")
    other = dataclasses.replace(LORA, r=2)
    with pytest.raises(StoreError, match=r"member-0/epoch-2: checkpoint does not fit"):
        joint(world, tmp_path, members=[0], epochs=3, lora=other)


# --------------------------------------------------------------------------- evaluation


@pytest.fixture(scope="module")
def logits(world, runs):
    """The jointly trained members evaluated one by one (``evaluate_member`` each, a fresh
    base), in turn and jointly into one table each (``evaluate_members``), and the separately
    trained members evaluated one by one (the whole one-by-one path)."""
    root = world["root"]
    out = {"apart": {}, "separate": {}}
    for member in MEMBERS:
        for kind, folder in (("apart", "joint"), ("separate", "separate")):
            out[kind][member] = read_logits(
                evaluate_member(
                    fresh_base(world),
                    world["tokenizer"],
                    world["eval"],
                    root / folder / f"member-{member}",
                    root / f"logits-{kind}" / f"member-{member}.parquet",
                    member=member,
                    infer=tw.INFER,
                    progress=False,
                )
            )
    # jointly on the base joint training gave back (one loaded base can serve both); in turn
    # on a fresh one (peft wraps the base it is given in place)
    for kind, base, infer in (
        ("together", runs["base"], JOINT),
        ("in_turn", fresh_base(world), IN_TURN),
    ):
        out[kind] = read_logits(
            evaluate_members(
                base,
                world["tokenizer"],
                world["eval"],
                dirs(root / "joint"),
                root / f"logits-{kind}" / "members-0-2.parquet",
                infer=infer,
                progress=False,
            )
        )
    return out


def member_rows(table: pd.DataFrame, member: int) -> pd.DataFrame:
    return table[table["member"] == member].reset_index(drop=True)


def test_one_table_in_turn_is_the_members_tables_one_after_another(logits):
    """The in-turn table of a stage is exactly each member's own table, concatenated."""
    expected = pd.concat([logits["apart"][m] for m in MEMBERS], ignore_index=True)
    pd.testing.assert_frame_equal(logits["in_turn"], expected)


def test_joint_evaluation_equals_evaluation_in_turn(logits):
    in_turn, together = logits["in_turn"], logits["together"]
    assert (
        len(together)
        == len(in_turn)
        == len(MEMBERS)
        * 2
        * sum(
            len(logits["apart"][0].query("epoch == 1 and eval_set == @s"))
            for s in ("in_domain", "unseen")
        )
    )
    keys = [c for c in in_turn.columns if c not in (*LOGIT_COLUMNS, "logsumexp_vocab")]
    pd.testing.assert_frame_equal(together[keys], in_turn[keys])  # the same rows, in order
    assert together[LOGIT_COLUMNS[5:]].isna().all().all()
    np.testing.assert_allclose(
        together[VALUES].to_numpy(), in_turn[VALUES].to_numpy(), rtol=0, atol=LOGIT_ATOL
    )
    # not trivially equal: the joint pass really rounds differently
    assert not np.array_equal(together[VALUES].to_numpy(), in_turn[VALUES].to_numpy())


def test_joint_pipeline_equals_separate_pipeline(logits):
    """Trained and evaluated together vs trained and evaluated apart: the same letter logits."""
    for member in MEMBERS:
        separate_, together = logits["separate"][member], member_rows(logits["together"], member)
        np.testing.assert_allclose(
            together[VALUES].to_numpy(), separate_[VALUES].to_numpy(), rtol=0, atol=LOGIT_ATOL
        )
    # control: members differ by far more than the tolerance
    a, b = (member_rows(logits["together"], m) for m in (0, 1))
    assert np.abs(a[VALUES].to_numpy() - b[VALUES].to_numpy()).max() > 1e-2


def test_joint_evaluation_stores_the_letters_asked_for(world, runs, tmp_path):
    """``stored_letters`` past the questions' own choices, in the joint pass as in turn."""
    tables = {}
    for kind, infer in (("in_turn", IN_TURN), ("together", JOINT)):
        tables[kind] = read_logits(
            evaluate_members(
                fresh_base(world),
                world["tokenizer"],
                {"in_domain": world["eval"]["in_domain"]},
                dirs(world["root"] / "joint", [0, 1]),
                tmp_path / kind / "members-0-1.parquet",
                infer=infer,
                stored_letters=6,
                progress=False,
            )
        )
    in_turn, together = tables["in_turn"], tables["together"]
    assert set(together["n_letters"]) == {6} and (together["n_choices"] < 6).all()
    assert np.isfinite(together[LOGIT_COLUMNS[:6]].to_numpy()).all()
    assert together[LOGIT_COLUMNS[6:]].isna().all().all()
    np.testing.assert_allclose(
        together[LOGIT_COLUMNS[:6]].to_numpy(),
        in_turn[LOGIT_COLUMNS[:6]].to_numpy(),
        rtol=0,
        atol=LOGIT_ATOL,
    )


def test_killed_joint_evaluation_resumes_and_never_mixes_parts(
    world, runs, logits, tmp_path, monkeypatch
):
    import lorauq.infer
    import lorauq.readout

    root = world["root"]
    out = tmp_path / "members-0-2.parquet"
    real = lorauq.readout.stacked_letter_logits
    calls: list[str] = []

    def dies_at_epoch_2(*args, **kwargs):
        if "epoch 2" in kwargs["desc"]:
            raise KeyboardInterrupt  # what a kill leaves: epoch 1's parts, no table
        calls.append(kwargs["desc"])
        return real(*args, **kwargs)

    def run(infer=JOINT, path=out):
        return evaluate_members(
            fresh_base(world),
            world["tokenizer"],
            world["eval"],
            dirs(root / "joint"),
            path,
            infer=infer,
            progress=False,
        )

    monkeypatch.setattr(lorauq.infer, "stacked_letter_logits", dies_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run()
    assert not out.exists()
    finished = sorted(p.name.rsplit("-", 1)[0] for p in parts_dir(out).iterdir())
    assert finished == [f"member-{m}-epoch-1" for m in MEMBERS]
    # evaluated in turn, the fingerprint differs (another way): it never takes a joint part
    apart_calls: list[str] = []
    real_apart = lorauq.readout.sequence_letter_logits

    def counted(*args, **kwargs):
        apart_calls.append(kwargs["desc"])
        return real_apart(*args, **kwargs)

    monkeypatch.setattr(lorauq.readout, "sequence_letter_logits", counted)
    other = tmp_path / "in-turn" / out.name
    shutil.copytree(parts_dir(out), parts_dir(other))
    pd.testing.assert_frame_equal(read_logits(run(IN_TURN, other)), logits["in_turn"])
    assert len(apart_calls) == len(MEMBERS) * 2 * len(world["eval"])  # every epoch again
    # the joint rerun evaluates epoch 2 only, and ends as the uninterrupted run did, bit for bit
    calls.clear()

    def counted_joint(*args, **kwargs):
        calls.append(kwargs["desc"])
        return real(*args, **kwargs)

    monkeypatch.setattr(lorauq.infer, "stacked_letter_logits", counted_joint)
    path = run()
    assert calls and all("epoch 2" in desc for desc in calls)
    assert len(calls) == len(world["eval"])  # all members of epoch 2 in one pass per set
    pd.testing.assert_frame_equal(read_logits(path), logits["together"])
    assert not parts_dir(path).exists()


def test_joint_evaluation_of_members_of_different_configs_is_refused(world, runs, tmp_path):
    other = tmp_path / "member-5"
    shutil.copytree(world["root"] / "joint" / "member-0", other)
    config = json.loads((other / "epoch-1" / "adapter_config.json").read_text())
    config["r"] = 2
    (other / "epoch-1" / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(StoreError, match=r"member-5/epoch-1: adapter config differs .* in 'r'"):
        evaluate_members(
            fresh_base(world),
            world["tokenizer"],
            world["eval"],
            {0: world["root"] / "joint" / "member-0", 5: other},
            tmp_path / "members.parquet",
            infer=JOINT,
            progress=False,
        )
    assert not (tmp_path / "members.parquet").exists()


def test_gradient_checkpointing_gives_the_same_members(world, tmp_path):
    lora = dataclasses.replace(LORA, dropout=0.0)
    plain = tmp_path / "plain"
    joint(world, plain, members=[0, 1], epochs=1, lora=lora)
    base = fresh_base(world)
    train_members(
        base,
        world["tokenizer"],
        world["train"],
        dirs(tmp_path / "checkpointed", [0, 1]),
        lora=lora,
        train=dataclasses.replace(TRAIN, epochs=1, gradient_checkpointing=True),
        progress=False,
        order_stream=ORDER_STREAM,
    )
    assert not base.is_activation_checkpointing  # the base is given back as it came
    for member in (0, 1):
        assert_adapters_close(
            plain / f"member-{member}" / "epoch-1",
            tmp_path / "checkpointed" / f"member-{member}" / "epoch-1",
        )
