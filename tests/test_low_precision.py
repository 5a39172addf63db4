"""bfloat16 and float16 bases on CPU: the LM head at the answer position runs in float32, and
float16 training scales its loss (``torch.amp.GradScaler``, state in the checkpoint) —
separately and jointly trained members alike, each member with its own scaler.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tinyworld as tw
import torch

import lorauq.joint
from lorauq.checkpoints import STATE_FILE
from lorauq.float32_head import Float32Head, float32_head
from lorauq.model import load_base_model, load_tokenizer
from lorauq.readout import letter_logits
from lorauq.schema import LOGIT_COLUMNS
from lorauq.train import train_member

pytestmark = pytest.mark.slow  # short trainings of a float16 and a bfloat16 base (~20 s)


@pytest.fixture(scope="module")
def base_dir(tiny_base):
    return tiny_base


def base(base_dir, dtype: str):
    return load_base_model(str(base_dir), dataclasses.replace(tw.BASE, dtype=dtype))


def tokenizer(base_dir):
    return load_tokenizer(str(base_dir), tw.BASE)


def train(base_dir, member_dir, dtype: str, epochs: int = 2, member: int = 0):
    return train_member(
        base(base_dir, dtype),
        tokenizer(base_dir),
        tw.train_set(),
        member=member,
        member_dir=member_dir,
        lora=tw.LORA,
        train=dataclasses.replace(tw.TRAIN, epochs=epochs),
        progress=False,
    )


def joint(base_dir, root, dtype: str, members=(0, 1), epochs: int = 2):
    return lorauq.joint.train_members(
        base(base_dir, dtype),
        tokenizer(base_dir),
        tw.train_set(),
        {m: root / f"member-{m}" for m in members},
        lora=tw.LORA,
        train=dataclasses.replace(tw.TRAIN, epochs=epochs),
        progress=False,
    )


def state(folder):
    return torch.load(folder / STATE_FILE, weights_only=True)


# --------------------------------------------------------------------------- float32 head


def test_float32_head_keeps_the_digits_a_bfloat16_head_rounds_away():
    torch.manual_seed(0)
    head = torch.nn.Linear(64, 50, bias=False).to(torch.bfloat16)
    with torch.no_grad():
        head.weight.normal_(std=2.0)  # logits ~ 15, like a real LM's
        hidden = torch.randn(8, 1, 64).to(torch.bfloat16)
        exact = hidden.double() @ head.weight.double().T
        low = head(hidden).double()
        high = Float32Head(head)(hidden)
    assert high.dtype == torch.float32
    relative = lambda x: ((x.double() - exact).abs() / exact.abs().clamp(min=1)).max().item()  # noqa: E731
    assert relative(low) > 1e-3  # bfloat16: 8 bits of mantissa, ~3 significant digits
    assert relative(high) < 1e-5  # float32 accumulation of 64 products


def test_float32_head_is_installed_for_the_block_and_put_back(base_dir):
    model = base(base_dir, "bfloat16")
    head = model.get_output_embeddings()
    with float32_head(model):
        inside = model.get_output_embeddings()
        assert isinstance(inside, Float32Head) and inside.head is head
        assert inside.weight is head.weight  # tied with the embedding, as before
        assert {n for n, _ in model.named_parameters()} >= {"model.embed_tokens.weight"}
    assert model.get_output_embeddings() is head
    plain = base(base_dir, "float32")
    with float32_head(plain):  # nothing to do for a float32 head
        assert plain.get_output_embeddings() is plain.lm_head
        assert type(plain.lm_head) is torch.nn.Linear


def test_bfloat16_letter_logits_come_from_a_float32_head(base_dir):
    frame = tw.eval_set("in_domain")
    tok = tokenizer(base_dir)
    reference = letter_logits(base(base_dir, "float32"), tok, frame, infer=tw.INFER, progress=False)
    got = letter_logits(base(base_dir, "bfloat16"), tok, frame, infer=tw.INFER, progress=False)
    values = got[LOGIT_COLUMNS[:5]].to_numpy()
    as_bf16 = torch.as_tensor(values).to(torch.bfloat16).float().numpy()
    assert (values != as_bf16).mean() > 0.9  # not rounded to bfloat16 on the way out
    # the bfloat16 body still rounds: close to float32, not equal
    delta = np.abs(values - reference[LOGIT_COLUMNS[:5]].to_numpy()).max()
    assert 0 < delta < 1e-2


# --------------------------------------------------------------------------- loss scaling


def test_float16_training_scales_the_loss_and_resumes_exactly(base_dir, tmp_path):
    straight = train(base_dir, tmp_path / "straight", "float16")
    assert all(np.isfinite(log["loss"]) for log in straight)
    saved = state(tmp_path / "straight" / "epoch-2")
    steps = 2 * -(-len(tw.train_set()) // tw.TRAIN.batch_size)
    # every step was scaled and taken (no overflow at the initial scale here)
    assert saved["scaler"]["scale"] == 2.0**16
    assert saved["scaler"]["_growth_tracker"] == steps
    weights = tw.adapter_tensors(tmp_path / "straight" / "epoch-2")
    assert all(w.dtype == torch.float32 for w in weights.values())  # adapters stay float32
    assert all(w.abs().max() > 0 for k, w in weights.items() if "lora_B" in k)
    train(base_dir, tmp_path / "resumed", "float16", epochs=1)
    assert state(tmp_path / "resumed" / "epoch-1")["scaler"]["_growth_tracker"] == steps // 2
    train(base_dir, tmp_path / "resumed", "float16", epochs=2)
    assert state(tmp_path / "resumed" / "epoch-2")["scaler"] == saved["scaler"]
    again = tw.adapter_tensors(tmp_path / "resumed" / "epoch-2")
    for key in weights:
        assert torch.equal(weights[key], again[key]), key
    # float32 runs carry no scaler state (a disabled scaler is a no-op)
    train(base_dir, tmp_path / "fp32", "float32", epochs=1)
    assert "scaler" not in state(tmp_path / "fp32" / "epoch-1")


@pytest.mark.parametrize(("dtype", "atol"), [("float16", 1e-4), ("bfloat16", 5e-4)])
def test_joint_low_precision_training_equals_training_apart(base_dir, tmp_path, dtype, atol):
    # Measured: float16 adapters differ by ≤ 8e-6, bfloat16 by ≤ 4e-5 (entries up to ~0.08):
    # both run the same float32 LoRA maths over a body that rounds differently per pass shape.
    joint(base_dir, tmp_path / "joint", dtype)
    for member in (0, 1):
        train(base_dir, tmp_path / "apart" / f"member-{member}", dtype, member=member)
        for epoch in (1, 2):
            a = tw.adapter_tensors(tmp_path / "apart" / f"member-{member}" / f"epoch-{epoch}")
            b = tw.adapter_tensors(tmp_path / "joint" / f"member-{member}" / f"epoch-{epoch}")
            for key in a:
                torch.testing.assert_close(b[key], a[key], rtol=0, atol=atol, msg=key)
        apart = state(tmp_path / "apart" / f"member-{member}" / "epoch-2").get("scaler")
        together = state(tmp_path / "joint" / f"member-{member}" / "epoch-2").get("scaler")
        assert apart == together
        assert (apart is not None) == (dtype == "float16")


def test_an_overflow_skips_only_that_member_s_step(base_dir, tmp_path, monkeypatch):
    """Each member has its own scaler: an infinite loss of member 1 at its first step skips
    member 1's step and halves member 1's scale; member 0 trains on as if alone."""
    reference = tmp_path / "reference"
    joint(base_dir, reference, "float16", epochs=1)
    real = lorauq.joint.member_loss
    calls = {"n": 0}

    def overflowing(logits, targets, pairs, train):
        loss, prior, total = real(logits, targets, pairs, train)
        calls["n"] += 1
        if calls["n"] == 2:  # the first step's second member
            total = total * float("inf")
        return loss, prior, total

    monkeypatch.setattr(lorauq.joint, "member_loss", overflowing)
    joint(base_dir, tmp_path / "hit", "float16", epochs=1)
    hit = {m: state(tmp_path / "hit" / f"member-{m}" / "epoch-1")["scaler"] for m in (0, 1)}
    ref = {m: state(reference / f"member-{m}" / "epoch-1")["scaler"] for m in (0, 1)}
    assert hit[0] == ref[0] and hit[0]["scale"] == 2.0**16
    assert hit[1]["scale"] == 2.0**15  # backed off once
    assert hit[1]["_growth_tracker"] == ref[1]["_growth_tracker"] - 1  # one step fewer taken
    a, b = (
        tw.adapter_tensors(root / "member-0" / "epoch-1") for root in (reference, tmp_path / "hit")
    )
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=key)
    a, b = (
        tw.adapter_tensors(root / "member-1" / "epoch-1") for root in (reference, tmp_path / "hit")
    )
    assert any((a[k] - b[k]).abs().max() > 1e-4 for k in a)  # member 1 lost a step
