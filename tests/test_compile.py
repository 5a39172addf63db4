"""``train.compile``: the torch.compile'd training loop learns the same adapter as the eager one."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import tinyworld as tw
import torch

from lorauq.model import load_base_model, load_tokenizer
from lorauq.train import train_member

pytestmark = [
    pytest.mark.slow,  # compiling forward and backward on CPU takes ~30 s
    pytest.mark.skipif(
        not any(shutil.which(cc) for cc in ("cc", "gcc", "clang")),
        reason="torch.compile on CPU needs a C compiler (cc/gcc/clang) on PATH",
    ),
]


def run(base_dir, member_dir, compile_: bool):
    torch.set_num_threads(1)
    return train_member(
        load_base_model(str(base_dir), tw.BASE),
        load_tokenizer(str(base_dir), tw.BASE),
        tw.train_set(),
        member=0,
        member_dir=member_dir,
        lora=tw.LORA,
        train=dataclasses.replace(tw.TRAIN, epochs=1, compile=compile_),
        progress=False,
    )


def test_compiled_training_matches_eager(tiny_base, tmp_path):
    base_dir = tiny_base
    eager = run(base_dir, tmp_path / "eager", compile_=False)
    compiled = run(base_dir, tmp_path / "compiled", compile_=True)
    assert compiled[0]["loss"] == pytest.approx(eager[0]["loss"], rel=1e-4)
    assert compiled[0]["tokens"] == eager[0]["tokens"]
    a = tw.adapter_tensors(tmp_path / "eager" / "epoch-1")
    b = tw.adapter_tensors(tmp_path / "compiled" / "epoch-1")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)
    # the B matrices moved away from zero: the compiled loop really trained
    assert any(b[k].abs().max() > 0 for k in b if "lora_B" in k)
