"""Training by steps (``train.steps``, ``train.checkpoint_steps``): the schedule, the batch
stream across epoch boundaries, and single-member and joint training by steps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tinyworld as tw
import torch

from lorauq.batching import training_batches
from lorauq.checkpoints import LOG_FILE, completed_epochs
from lorauq.config import TrainParams, resolve_params
from lorauq.errors import ConfigError, StoreError
from lorauq.schedule import checkpoint_steps, step_batches, steps_per_epoch
from lorauq.train import epoch_generator

LENGTHS = [5 + (i * 7) % 11 for i in range(45)]  # 45 rows, batch 8: 6 batches an epoch


def _by_steps(steps: int, marks: list[int], **kwargs) -> TrainParams:
    return TrainParams(epochs=None, steps=steps, checkpoint_steps=marks, batch_size=8, **kwargs)


def test_checkpoint_steps_by_epochs_and_by_steps():
    assert checkpoint_steps(6, TrainParams(epochs=3, batch_size=8)) == [6, 12, 18]
    assert checkpoint_steps(6, _by_steps(20, [4, 13])) == [4, 13, 20]
    assert checkpoint_steps(6, _by_steps(20, [])) == [20]
    assert checkpoint_steps(6, _by_steps(20, [10, 20])) == [10, 20]  # the last named once
    assert _by_steps(20, [4, 13]).checkpoint_count == 3
    assert TrainParams(epochs=3).checkpoint_count == 3


@pytest.mark.parametrize("batching", ["bucketed", "shuffle"])
def test_steps_continue_into_the_next_epochs_seeded_order(batching):
    train = _by_steps(15, [], batching=batching)
    assert steps_per_epoch(LENGTHS, train) == 6
    member = 3
    expected = [
        batch
        for epoch in (1, 2, 3)
        for batch in training_batches(LENGTHS, 8, batching, epoch_generator(member, epoch))
    ][:15]
    stream = list(step_batches(LENGTHS, train, lambda e: epoch_generator(member, e), 1, 15))
    assert len(stream) == 15
    for got, want in zip(stream, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    # a stream resumed at any step (here mid-epoch 2, then across its boundary) draws the same
    resumed = list(step_batches(LENGTHS, train, lambda e: epoch_generator(member, e), 5, 14))
    for got, want in zip(resumed, expected[4:14], strict=True):
        np.testing.assert_array_equal(got, want)
    # every row once per epoch, whichever epoch the stream is in
    assert sorted(np.concatenate(stream[6:12]).tolist()) == list(range(len(LENGTHS)))


def _params(**overrides):
    return resolve_params(tw_params_raw(), overrides)


def tw_params_raw():
    import yaml

    return yaml.safe_load((tw.ROOT / "params.yaml").read_text(encoding="utf-8"))


def test_steps_without_epochs_trains_by_steps_and_an_ensemble_can_switch():
    p = _params(**{"train.steps": 40, "train.epochs": None, "train.checkpoint_steps": [10, 25]})
    assert (p.train.epochs, p.train.steps, p.train.checkpoint_steps) == (None, 40, [10, 25])
    assert p.train.checkpoint_count == 3
    raw = tw_params_raw()
    raw["tiny"]["train"] = {k: v for k, v in raw["tiny"]["train"].items() if k != "epochs"}
    raw["tiny"]["train"] |= {"steps": 30, "checkpoint_steps": [10, 20]}
    assert resolve_params(raw).train.epochs is None  # steps given, epochs absent: by steps
    raw = tw_params_raw()
    main = next(iter(raw["tiny"]["ensembles"]))
    raw["tiny"]["ensembles"][main] = {"train": {"steps": 30, "checkpoint_steps": [10, 20]}}
    with pytest.raises(ConfigError, match=rf"tiny\.ensembles\.{main}\.train\.steps \(30\) and"):
        resolve_params(raw)  # the profile's epochs are inherited: the override must null them
    switched = {"steps": 30, "epochs": None, "checkpoint_steps": [10, 20]}
    raw["tiny"]["ensembles"][main] = {"train": switched}
    assert resolve_params(raw).ensemble(main).train.steps == 30


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train.epochs": None}, r"tiny\.train\.epochs and tiny\.train\.steps are both null"),
        ({"train.checkpoint_steps": [2]}, r"tiny\.train\.checkpoint_steps is set but the run"),
        (
            {"train.steps": 9, "train.epochs": None, "train.checkpoint_steps": [5, 3]},
            r"checkpoint_steps \[5, 3\]: increasing steps in 1\.\.train\.steps \(9\)",
        ),
        ({"train.steps": -1, "train.epochs": None}, r"tiny\.train\.steps must be positive"),
    ],
)
def test_bad_step_settings_name_their_keys(overrides, message):
    with pytest.raises(ConfigError, match=message):
        _params(**overrides)


STEPS = tw.KILL_SCHEDULES["steps"]  # checkpoints at steps 4 and 9 of 6-step epochs


@pytest.mark.slow
def test_steps_on_epoch_boundaries_equal_training_by_epochs(tiny_base, tmp_path):
    by_epochs = tw.train(tiny_base, tmp_path / "epochs", epochs=2)
    by_steps = tw.train(tiny_base, tmp_path / "steps", steps=12, checkpoint_steps=[6])
    assert [log["step"] for log in by_epochs] == [log["step"] for log in by_steps] == [6, 12]
    assert [log["loss"] for log in by_epochs] == [log["loss"] for log in by_steps]
    for epoch in (1, 2):
        a = tw.adapter_tensors(tmp_path / "epochs" / f"epoch-{epoch}")
        b = tw.adapter_tensors(tmp_path / "steps" / f"epoch-{epoch}")
        for key in a:
            assert torch.equal(a[key], b[key]), (epoch, key)


@pytest.mark.slow
def test_single_and_joint_training_by_steps_agree(tiny_base, tmp_path):
    single = {m: tw.train(tiny_base, tmp_path / f"single-{m}", member=m, **STEPS) for m in (0, 1)}
    joint = tw.train_joint(tiny_base, tmp_path / "joint", members=[0, 1], **STEPS)
    for m in (0, 1):
        assert completed_epochs(tmp_path / "joint" / f"member-{m}") == [1, 2]
        assert [log["step"] for log in joint[m]] == [log["step"] for log in single[m]] == [4, 9]
        saved = json.loads((tmp_path / "joint" / f"member-{m}" / "epoch-2" / LOG_FILE).read_text())
        assert (saved["epoch"], saved["step"]) == (2, 9)
        np.testing.assert_allclose(
            [log["loss"] for log in joint[m]], [log["loss"] for log in single[m]], rtol=1e-4
        )
        a = tw.adapter_tensors(tmp_path / f"single-{m}" / "epoch-2")
        b = tw.adapter_tensors(tmp_path / "joint" / f"member-{m}" / "epoch-2")
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=1e-3, atol=1e-5)


@pytest.mark.slow
def test_a_changed_schedule_refuses_to_resume(tiny_base, tmp_path):
    tw.train(tiny_base, tmp_path / "m", steps=4)
    with pytest.raises(StoreError, match=r"epoch-1: checkpoint taken at step 4, but"):
        tw.train(tiny_base, tmp_path / "m", **STEPS | {"checkpoint_steps": [3]})


@pytest.mark.slow
def test_a_stage_trained_by_steps_reads_out_each_checkpoint(tmp_path):
    """finetune and infer of a two-member stage by steps: logits at checkpoints 1 and 2 (the
    ``epoch`` column), their steps in the training json and in training.csv's table."""
    from lorauq.layout import Layout
    from lorauq.stages import base, finetune, infer, prepare
    from lorauq.stages.figures import training_table
    from lorauq.store import read_logits

    schedule = {"train.epochs": None, "train.steps": 9, "train.checkpoint_steps": [4]}
    p = resolve_params(tw.stage_params("0-1", "main"), schedule)
    layout = Layout(tmp_path)
    prepare.run(p, layout)
    base.run(p, layout, progress=False)
    logs = finetune.run(p, "main", "0-1", layout, progress=False)
    assert {m: [log["step"] for log in logs[m]] for m in (0, 1)} == {0: [4, 9], 1: [4, 9]}
    table = read_logits(infer.run(p, "main", "0-1", layout, progress=False))
    assert sorted(table.groupby(["member", "epoch"]).groups) == [
        (m, e) for m in (0, 1) for e in (1, 2)
    ]
    steps = training_table(p, layout)[["member", "epoch", "step"]]
    assert steps.to_numpy().tolist() == [[0, 1, 4], [0, 2, 9], [1, 1, 4], [1, 2, 9]]


def test_methods_count_fine_tuning_by_steps_in_passes_over_the_data():
    from lorauq.methods.registry import method

    fitted = {"n_letters": 4, "n_train_questions": 40}
    by_epochs = _params(**{"train.epochs": 4})
    assert method("laplace").cost(by_epochs, fitted)["finetune_passes"] == 1 + 4 / 4
    by_steps = {"train.epochs": None, "train.steps": 20, "train.checkpoint_steps": [5, 10]}
    p = _params(**by_steps)
    rows = 20 * p.train.batch_size  # 20 steps of batch_size questions, over 40 questions
    cost = method("laplace").cost(p, fitted)["finetune_passes"]
    assert cost == pytest.approx(1 + 4 / (rows / 40))


@pytest.mark.parametrize(
    ("train", "said"),
    [
        (TrainParams(epochs=1), "1 epoch"),
        (TrainParams(epochs=3), "3 epochs"),
        (TrainParams(epochs=None, steps=8), "8 steps, checkpoint at 8"),
        (
            TrainParams(epochs=None, steps=5000, checkpoint_steps=[2500]),
            "5000 steps, checkpoints at 2500 and 5000",
        ),
        (
            TrainParams(epochs=None, steps=8, checkpoint_steps=[6, 2, 4, 8]),
            "8 steps, checkpoints at 2, 4, 6 and 8",
        ),
    ],
)
def test_a_runs_length_is_said_in_the_unit_it_counts_in(train: TrainParams, said: str) -> None:
    assert train.length == said
    if train.steps is not None:  # it lists every checkpoint the run writes
        listed = said.split(" at ")[1].replace(" and ", ", ").split(", ")
        assert len(listed) == train.checkpoint_count
