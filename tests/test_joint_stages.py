"""A multi-member stage trained and evaluated jointly (``train.joint``, ``infer.joint``) or one
member after another leaves the same outputs: the same files under ``data/adapters`` and
``data/logits``, the same log keys, the same rows of the stage's one logits table and of its
training json, numbers equal to float rounding. A finished stage rerun the other way trains
nothing again.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tinyworld as tw

from lorauq.config import resolve_params
from lorauq.layout import Layout
from lorauq.schema import LOGIT_COLUMNS
from lorauq.stages import base, finetune, infer, prepare
from lorauq.store import read_logits

pytestmark = pytest.mark.slow  # a base, 2 × 3 members × 2 epochs and their inference (~40 s)

UNIT = "0-2"
ENSEMBLE = "lora_l2"
WAYS = ("joint", "in_turn")
VALUES = [*LOGIT_COLUMNS[:5], "logsumexp_vocab"]


def params(joint: bool):
    return resolve_params(tw.stage_params(UNIT, ENSEMBLE, joint=joint))


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("stages")
    shared = Layout(root / "shared")
    prepare.run(params(True), shared)
    base.run(params(True), shared, progress=False)
    out = {}
    for way in WAYS:
        layout = Layout(root / way)
        for name in ("data/prepared", "data/base"):
            shutil.copytree(shared.root / name, layout.root / name)
        p = params(way == "joint")
        logs = finetune.run(p, ENSEMBLE, UNIT, layout, progress=False)
        table = infer.run(p, ENSEMBLE, UNIT, layout, progress=False)
        out[way] = {"layout": layout, "logs": logs, "table": table, "params": p}
    return out


def test_the_same_files_either_way(runs):
    joint, in_turn = (runs[way]["layout"] for way in WAYS)
    for sub in ("data/adapters", "data/logits"):
        assert files(joint.root / sub) == files(in_turn.root / sub)
    names = files(joint.root / "data" / "logits")
    assert names == [f"{ENSEMBLE}", f"{ENSEMBLE}/members-{UNIT}.parquet",
                     f"{ENSEMBLE}/members-{UNIT}.training.json"]  # fmt: skip
    epochs = files(joint.unit_dir(ENSEMBLE, UNIT))
    assert f"member-2/epoch-{tw.TRAIN.epochs}/adapter_model.safetensors" in epochs
    assert not any(name.split("/")[-1].startswith(".") for name in epochs)  # no temporaries


def test_the_same_logs_and_training_json(runs):
    joint, in_turn = (runs[way] for way in WAYS)
    assert list(joint["logs"]) == list(in_turn["logs"]) == [0, 1, 2]
    for member in (0, 1, 2):
        for a, b in zip(in_turn["logs"][member], joint["logs"][member], strict=True):
            assert a.keys() == b.keys()
            assert (a["member"], a["epoch"], a["tokens"]) == (b["member"], b["epoch"], b["tokens"])
            assert b["loss"] == pytest.approx(a["loss"], rel=1e-6)
            assert a["elapsed_s"] > 0 and b["elapsed_s"] > 0  # timed with progress off too
    records = {
        way: json.loads(runs[way]["layout"].unit_training(ENSEMBLE, UNIT).read_text())
        for way in WAYS
    }
    assert len(records["joint"]) == 3 * tw.TRAIN.epochs
    for a, b in zip(records["in_turn"], records["joint"], strict=True):
        assert a.keys() == b.keys()
        assert (a["member"], a["epoch"], a["tokens"]) == (b["member"], b["epoch"], b["tokens"])
        assert b["lora_l2"] == pytest.approx(a["lora_l2"], rel=1e-5)
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-6)


def test_the_same_logits_table(runs):
    joint, in_turn = (read_logits(runs[way]["table"]) for way in WAYS)
    assert list(joint.columns) == list(in_turn.columns)
    keys = [c for c in joint.columns if c not in (*LOGIT_COLUMNS, "logsumexp_vocab")]
    pd.testing.assert_frame_equal(joint[keys], in_turn[keys])
    assert sorted(joint["member"].unique()) == [0, 1, 2]
    np.testing.assert_allclose(
        joint[VALUES].to_numpy(), in_turn[VALUES].to_numpy(), rtol=0, atol=1e-5
    )
    a, b = (joint[joint["member"] == m][VALUES].to_numpy() for m in (0, 1))
    assert np.abs(a - b).max() > 1e-2  # members differ by far more than the tolerance


def test_a_finished_stage_rerun_the_other_way_trains_nothing(runs):
    for way, other in (("joint", "in_turn"), ("in_turn", "joint")):
        layout = runs[way]["layout"]
        adapter = layout.member_dir(ENSEMBLE, UNIT, 1) / "epoch-1" / "adapter_model.safetensors"
        stamp = adapter.stat().st_mtime_ns
        logs = finetune.run(runs[other]["params"], ENSEMBLE, UNIT, layout, progress=False)
        assert logs == runs[way]["logs"]
        assert adapter.stat().st_mtime_ns == stamp
