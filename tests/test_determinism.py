"""Two runs of the tiny world (base, fine-tuning, inference) give bitwise-identical results on
CPU: the same base weights, the same adapters and the same stored logits, byte for byte.

This is what lets ``dvc repro`` report "metrics unchanged" and a killed run resume exactly.
What to expect on a GPU is in ``docs/determinism.md``.
"""

from __future__ import annotations

import numpy as np
import pytest
import tinyworld as tw
import torch

from lorauq.infer import evaluate_member
from lorauq.model import load_base_model, load_tokenizer
from lorauq.schema import LOGIT_COLUMNS
from lorauq.store import read_logits

pytestmark = pytest.mark.slow  # two base builds and two short trainings (~12 s)


def run_once(root):
    """Build the base, train member 0 for two epochs, store its letter logits."""
    base_dir = tw.build_base(root / "base")
    member_dir = root / "member-0"
    tw.train(base_dir, member_dir, epochs=2)
    out = evaluate_member(
        load_base_model(str(base_dir), tw.BASE),
        load_tokenizer(str(base_dir), tw.BASE),
        {"in_domain": tw.eval_set("in_domain"), "unseen": tw.eval_set("unseen")},
        member_dir,
        root / "member-0.parquet",
        member=0,
        infer=tw.INFER,
        progress=False,
    )
    return base_dir, member_dir, out


def test_two_runs_are_bitwise_identical(tmp_path):
    (base_a, member_a, logits_a), (base_b, member_b, logits_b) = (
        run_once(tmp_path / "a"),
        run_once(tmp_path / "b"),
    )
    assert (base_a / "model.safetensors").read_bytes() == (
        base_b / "model.safetensors"
    ).read_bytes()
    for epoch in (1, 2):
        a = tw.adapter_tensors(member_a / f"epoch-{epoch}")
        b = tw.adapter_tensors(member_b / f"epoch-{epoch}")
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (epoch, key)
    table_a, table_b = read_logits(logits_a), read_logits(logits_b)
    assert len(table_a) == 2 * (len(tw.eval_set("in_domain")) + len(tw.eval_set("unseen")))
    columns = [*LOGIT_COLUMNS, "logsumexp_vocab"]
    # bitwise: compare the float32 bit patterns, NaN padding included
    bits_a = table_a[columns].to_numpy(np.float32).view(np.uint32)
    bits_b = table_b[columns].to_numpy(np.float32).view(np.uint32)
    np.testing.assert_array_equal(bits_a, bits_b)
    assert table_a.drop(columns=columns).equals(table_b.drop(columns=columns))
    # and the two epochs differ, so equality is not trivially "nothing was trained"
    by_epoch = [table_a[table_a["epoch"] == e][LOGIT_COLUMNS[:5]].to_numpy() for e in (1, 2)]
    assert np.abs(by_epoch[0] - by_epoch[1]).max() > 1e-6
