"""``train.batch_order``: whose batch order a member sees.

``ensemble`` (the paper profile, as the authors' loader) gives member m of every ensemble its
own order; ``shared`` (tiny, smol) gives member m of every ensemble the same one, with the
seeds the orders had before the setting existed. The finetune stage hands the ensemble's
stream to both trainers; tests/test_joint.py trains jointly and apart under one stream and
finds the same members.
"""

from __future__ import annotations

import dataclasses
import zlib
from pathlib import Path

import pandas as pd
import pytest
import torch

from lorauq.batching import training_batches
from lorauq.config import TrainParams, load_params
from lorauq.layout import Layout
from lorauq.stages import finetune
from lorauq.train import batch_order_stream, epoch_generator

ROOT = Path(__file__).resolve().parents[1]
ENSEMBLE = TrainParams(batch_order="ensemble")
SHARED = TrainParams(batch_order="shared")
LENGTHS = [5 + (i * 7) % 23 for i in range(64)]


def order(stream: int, member: int = 0, epoch: int = 1, batching: str = "shuffle") -> list:
    batches = training_batches(LENGTHS, 8, batching, epoch_generator(member, epoch, stream))
    return [list(map(int, batch)) for batch in batches]


def test_streams() -> None:
    assert batch_order_stream(SHARED, "lora_l2") == batch_order_stream(SHARED, "r32") == 0
    streams = {name: batch_order_stream(ENSEMBLE, name) for name in ("lora_l2", "reg_l2", "r32")}
    assert len(set(streams.values())) == 3 and 0 not in streams.values()
    # a CRC-32 of the name: the same on every machine and in every Python process
    assert streams["r32"] == zlib.crc32(b"r32") & 0x7FFF_FFFF
    assert all(0 < s < 2**31 for s in streams.values())


def test_shared_stream_keeps_the_seed_of_member_and_epoch() -> None:
    legacy = torch.Generator().manual_seed(1_000_003 * 2 + 3)
    assert torch.equal(
        torch.randperm(50, generator=epoch_generator(2, 3, 0)),
        torch.randperm(50, generator=legacy),
    )


@pytest.mark.parametrize("batching", ["shuffle", "bucketed"])
def test_ensembles_draw_their_own_orders(batching: str) -> None:
    lora_l2 = batch_order_stream(ENSEMBLE, "lora_l2")
    r32 = batch_order_stream(ENSEMBLE, "r32")
    assert order(lora_l2, batching=batching) == order(lora_l2, batching=batching)  # seeded
    assert order(lora_l2, batching=batching) != order(r32, batching=batching)
    assert order(lora_l2, batching=batching) != order(0, batching=batching)
    # every question once per epoch, whatever the order
    for stream in (0, lora_l2, r32):
        flat = sorted(i for batch in order(stream, batching=batching) for i in batch)
        assert flat == list(range(len(LENGTHS)))
    # members and epochs still differ within an ensemble
    assert order(r32, member=0) != order(r32, member=1)
    assert order(r32, epoch=1) != order(r32, epoch=2)


def test_profiles_state_their_order() -> None:
    paper = load_params(ROOT / "params.yaml", {"profile": "paper"})
    tiny = load_params(ROOT / "params.yaml", {"profile": "tiny"})
    assert {e.train.batch_order for e in paper.ensembles.values()} == {"ensemble"}
    assert {e.train.batch_order for e in tiny.ensembles.values()} == {"shared"}
    assert TrainParams().batch_order == "ensemble"  # a profile that does not say


@pytest.mark.slow  # calls the stage (its trainers replaced: a second at most)
@pytest.mark.parametrize("joint", [True, False])
def test_finetune_stage_hands_each_ensemble_its_stream(joint, monkeypatch, tmp_path) -> None:
    """Both trainers get the ensemble's stream from the stage (nothing trains here)."""
    params = load_params(
        ROOT / "params.yaml", {"train.batch_order": "ensemble", "train.joint": joint}
    )
    calls: list[tuple[str, int]] = []
    monkeypatch.setattr(finetune, "read_prepared", lambda path: pd.DataFrame())
    monkeypatch.setattr(finetune, "load_base", lambda base, folder: (None, None))
    monkeypatch.setattr(finetune, "set_threads", lambda threads: None)

    def record(*args, **kwargs):
        calls.append(("joint" if "member" not in kwargs else "apart", kwargs["order_stream"]))
        return {}

    monkeypatch.setattr(finetune, "train_members", record)
    monkeypatch.setattr(finetune, "train_member", record)
    for name in ("lora_l2", "r32"):
        finetune.run(params, name, params.units[0], Layout(tmp_path), progress=False)
    kinds = {"joint"} if joint else {"apart"}
    assert {kind for kind, _ in calls} == kinds
    streams = [stream for _, stream in calls]
    expected_r32 = batch_order_stream(params.ensemble("r32").train, "r32")
    assert streams[0] == batch_order_stream(params.ensemble("lora_l2").train, "lora_l2")
    assert streams[-1] == expected_r32 != streams[0]
    shared = dataclasses.replace(params.ensemble("r32").train, batch_order="shared")
    assert batch_order_stream(shared, "r32") == 0
