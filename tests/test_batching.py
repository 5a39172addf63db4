"""Left padding, the last-position fast path and the two batch planners."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from lorauq.batching import (
    bucketed_batches,
    budget_batches,
    collate_left,
    last_position_logits,
    pad_multiple,
    shuffled_batches,
    training_batches,
)
from lorauq.config import BaseParams, load_params
from lorauq.errors import ConfigError
from lorauq.tiny.model import build_tiny_model, train_tokenizer

LINES = [
    "Q: What is a dog?\nAnswer Choices:\n(a) animal\n(b) fruit\n(c) tool\nA: (a).",
    "Q: What is a pear?\nAnswer Choices:\n(a) animal\n(b) fruit\n(c) tool\nA: (b).",
    "Q: Which group does a saw belong to?\nAnswer Choices:\n(a) tool\n(b) fruit\nA: (a).",
    "the quick brown fox jumps over the lazy dog",
]
TINY = BaseParams(
    vocab_size=300,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=1,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    seed=0,
)


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(LINES * 3, TINY.vocab_size)


@pytest.fixture(scope="module")
def model(tokenizer):
    m = build_tiny_model(tokenizer, TINY)
    m.eval()
    return m


@pytest.fixture(scope="module")
def sequences(tokenizer):
    texts = [LINES[0], "Q: What is a cat?", LINES[2], "Q:", LINES[3]]
    seqs = [tokenizer(t)["input_ids"] for t in texts]
    assert len({len(s) for s in seqs}) == len(seqs)  # all different lengths: real padding
    return seqs


# --------------------------------------------------------------------------- collate_left


def test_collate_left_shapes_padding_positions():
    seqs = [[5, 6, 7], [8], [9, 10]]
    input_ids, mask, positions = collate_left(seqs, pad_id=0)
    assert input_ids.shape == mask.shape == positions.shape == (3, 3)
    assert input_ids.dtype == mask.dtype == positions.dtype == torch.long
    assert input_ids.tolist() == [[5, 6, 7], [0, 0, 8], [0, 9, 10]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1], [0, 1, 1]]
    assert positions.tolist() == [[0, 1, 2], [0, 0, 0], [0, 0, 1]]


def test_collate_left_custom_pad_and_device():
    input_ids, mask, positions = collate_left([[1, 2], [3, 4, 5, 6]], 99, torch.device("cpu"))
    assert input_ids[0].tolist() == [99, 99, 1, 2]
    assert input_ids.device.type == "cpu"
    # the last column is always a real token: the answer position
    assert (mask[:, -1] == 1).all()
    assert positions[1].tolist() == [0, 1, 2, 3]
    assert positions[0, -1] == 1


def test_collate_left_single_and_equal_lengths():
    input_ids, mask, positions = collate_left([[4, 5, 6], [7, 8, 9]], 0)
    assert mask.all()
    assert positions.tolist() == [[0, 1, 2], [0, 1, 2]]
    input_ids, _, _ = collate_left([[3]], 0)
    assert input_ids.tolist() == [[3]]


# --------------------------------------------------------------------------- forward passes


def test_left_padded_equals_unpadded(model, tokenizer, sequences):
    inputs = collate_left(sequences, tokenizer.pad_token_id)
    with torch.no_grad():
        batched = last_position_logits(model, *inputs)
        unmasked = model(input_ids=inputs[0], use_cache=False).logits[:, -1]
        singles = torch.stack(
            [model(input_ids=torch.tensor([s]), use_cache=False).logits[0, -1] for s in sequences]
        )
    assert batched.shape == (len(sequences), len(tokenizer))
    delta = (batched - singles).abs().max(dim=-1).values
    assert delta.max().item() <= 1e-5, delta
    # control: the same padded batch read without mask/positions is visibly different,
    # so the tolerance above is a real check on the padding
    padded_rows = [i for i, s in enumerate(sequences) if len(s) < inputs[0].shape[1]]
    control = (unmasked - singles).abs().max(dim=-1).values[padded_rows]
    assert control.min().item() > 1e-3, control


def test_pad_token_value_does_not_matter(model, tokenizer, sequences):
    with torch.no_grad():
        a = last_position_logits(model, *collate_left(sequences, tokenizer.pad_token_id))
        b = last_position_logits(model, *collate_left(sequences, 7))
    assert (a - b).abs().max().item() <= 1e-5


def test_fast_path_equals_full_forward(model, tokenizer, sequences):
    inputs = collate_left(sequences, tokenizer.pad_token_id)
    with torch.no_grad():
        fast = last_position_logits(model, *inputs)
        full = model(
            input_ids=inputs[0], attention_mask=inputs[1], position_ids=inputs[2], use_cache=False
        ).logits
    assert full.shape[1] == inputs[0].shape[1]  # the plain path materialises every position
    assert fast.shape == full[:, -1].shape
    assert (fast - full[:, -1]).abs().max().item() <= 1e-5
    assert (fast - full[:, -2]).abs().max().item() > 1e-3  # a wrong position would show


def test_fast_path_carries_gradients(model, tokenizer, sequences):
    inputs = collate_left(sequences[:2], tokenizer.pad_token_id)
    model.zero_grad(set_to_none=True)
    logits = last_position_logits(model, *inputs)
    logits.logsumexp(-1).sum().backward()
    grad = model.model.embed_tokens.weight.grad
    assert grad is not None and grad.abs().sum().item() > 0
    model.zero_grad(set_to_none=True)


# --------------------------------------------------------------------------- budget_batches


@pytest.mark.parametrize("seed", range(6))
def test_budget_batches_cover_once_and_respect_budget(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 60, size=int(rng.integers(1, 80))).tolist()
    budget = int(rng.integers(40, 400))
    batches = budget_batches(lengths, budget)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) >= 1
        width = max(lengths[i] for i in batch)
        assert width * len(batch) <= budget
    # length-sorted: every batch's longest is no longer than the next batch's shortest
    for a, b in itertools.pairwise(batches):
        assert max(lengths[i] for i in a) <= min(lengths[i] for i in b)


def test_budget_batches_are_greedy_and_oversized_alone():
    lengths = [3, 10, 3, 3, 50, 4]
    batches = [b.tolist() for b in budget_batches(lengths, 12)]
    # sorted (stable): 0, 2, 3 (3 each), 5 (4), 1 (10), 4 (50, over budget, alone)
    assert batches == [[0, 2, 3], [5], [1], [4]]
    assert [b.tolist() for b in budget_batches([5, 5, 5, 5], 1000)] == [[0, 1, 2, 3]]


# --------------------------------------------------------------------------- bucketed_batches


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(("n", "batch_size"), [(37, 4), (1000, 3), (5, 8)])
def test_bucketed_batches_permutation_and_sizes(n, batch_size):
    lengths = np.random.default_rng(n).integers(5, 90, size=n).tolist()
    batches = bucketed_batches(lengths, batch_size, _gen(0))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(n))
    assert all(1 <= len(b) <= batch_size for b in batches)
    window = batch_size * 50
    n_windows = -(-n // window)
    assert sum(len(b) < batch_size for b in batches) <= n_windows
    # each batch is cut from a length-sorted window
    for batch in batches:
        got = [lengths[i] for i in batch]
        assert got == sorted(got)


def test_bucketed_batches_deterministic_per_seed():
    lengths = np.random.default_rng(1).integers(5, 90, size=200).tolist()
    a = bucketed_batches(lengths, 8, _gen(3))
    b = bucketed_batches(lengths, 8, _gen(3))
    c = bucketed_batches(lengths, 8, _gen(4))
    assert [x.tolist() for x in a] == [x.tolist() for x in b]
    assert [x.tolist() for x in a] != [x.tolist() for x in c]


def test_bucketed_batches_cut_padding():
    lengths = np.random.default_rng(2).integers(5, 200, size=400).tolist()
    batches = bucketed_batches(lengths, 8, _gen(0))
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    random_order = torch.randperm(400, generator=_gen(0)).numpy()
    naive = sum(
        max(lengths[i] for i in random_order[s : s + 8]) * len(random_order[s : s + 8])
        for s in range(0, 400, 8)
    )
    assert padded < 0.75 * naive


# --------------------------------------------------------------------------- shuffled_batches


@pytest.mark.parametrize(("n", "batch_size"), [(37, 4), (16, 8), (5, 8)])
def test_shuffled_batches_are_a_plain_shuffle_cut_in_order(n, batch_size):
    """The authors' batching: one seeded permutation, cut into consecutive batches."""
    lengths = np.random.default_rng(n).integers(5, 90, size=n).tolist()
    batches = shuffled_batches(lengths, batch_size, _gen(7))
    expected = torch.randperm(n, generator=_gen(7)).numpy()
    assert np.concatenate(batches).tolist() == expected.tolist()
    assert [len(b) for b in batches[:-1]] == [batch_size] * (len(batches) - 1)
    assert 1 <= len(batches[-1]) <= batch_size


def test_training_batches_follow_the_param():
    lengths = np.random.default_rng(3).integers(5, 90, size=64).tolist()
    for name, planner in (("bucketed", bucketed_batches), ("shuffle", shuffled_batches)):
        got = training_batches(lengths, 8, name, _gen(1))
        assert [b.tolist() for b in got] == [b.tolist() for b in planner(lengths, 8, _gen(1))]


def test_paper_profile_shuffles_and_a_wrong_batching_is_named(tmp_path):
    root = Path(__file__).resolve().parents[1]
    assert load_params(root / "params.yaml", {"profile": "paper"}).train.batching == "shuffle"
    assert load_params(root / "params.yaml").train.batching == "bucketed"
    with pytest.raises(ConfigError, match=r"train\.batching"):
        load_params(root / "params.yaml", {"tiny.train.batching": "random"})


def test_collate_left_rounds_width_up_to_multiple():
    input_ids, mask, positions = collate_left([[5, 6, 7], [8]], 0, multiple=8)
    assert input_ids.shape == (2, 8)
    assert input_ids[0].tolist() == [0] * 5 + [5, 6, 7]
    assert mask.sum(-1).tolist() == [3, 1]
    assert positions[0, -3:].tolist() == [0, 1, 2] and positions[1, -1].item() == 0
    assert collate_left([[1] * 16], 0, multiple=8)[0].shape == (1, 16)


def test_pad_multiple_only_on_gpu():
    assert pad_multiple(torch.device("cpu")) == 1
    assert pad_multiple(torch.device("cuda")) == 8
