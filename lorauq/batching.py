"""Token batches without wasted padding, and the one forward pass everything needs.

Both training and inference need only the logits at the answer position, which with left
padding is always the last one. Sorting by length and batching by a token budget replaces
padding every prompt to a fixed maximum (the authors' 128/512), and ``logits_to_keep=1``
applies the LM head at that one position instead of materialising sequence × vocabulary.
In a bfloat16 or float16 run that one position's head runs in float32
(:func:`lorauq.float32_head.float32_head`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "BATCHINGS",
    "bucketed_batches",
    "budget_batches",
    "collate_left",
    "last_position_logits",
    "pad_multiple",
    "shuffled_batches",
    "training_batches",
]


def pad_multiple(device: torch.device) -> int:
    """Width granularity of a batch: 8 on GPU, none on CPU.

    On a GPU every new batch width can cost a new kernel plan (cuDNN attention, cuBLAS), so
    rounding widths up to a multiple of 8 lets the few shapes be reused and keeps tensor-core
    tiles aligned; on a CPU, padding only adds work in proportion.
    """
    return 8 if device.type == "cuda" else 1


def collate_left(
    sequences: Sequence[Sequence[int]],
    pad_id: int,
    device: torch.device | None = None,
    multiple: int = 1,
):
    """Left-pad token lists into (input_ids, attention_mask, position_ids) tensors.

    Position ids restart at 0 at each row's first real token, so a left-padded prompt gets
    the same logits as the unpadded one. The width is rounded up to ``multiple``.
    """
    width = max(len(s) for s in sequences)
    width = -(-width // multiple) * multiple
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, width - len(seq) :] = torch.as_tensor(seq, dtype=torch.long)
        attention_mask[row, width - len(seq) :] = 1
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    if device is not None:
        input_ids, attention_mask, position_ids = (
            t.to(device) for t in (input_ids, attention_mask, position_ids)
        )
    return input_ids, attention_mask, position_ids


def last_position_logits(model, input_ids, attention_mask, position_ids) -> torch.Tensor:
    """Full-vocabulary logits at the last (answer) position only: shape (batch, vocab)."""
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        logits_to_keep=1,
        use_cache=False,
    )
    return out.logits[:, -1, :]


def budget_batches(lengths: Sequence[int], batch_tokens: int) -> list[np.ndarray]:
    """Indices sorted by length, cut into batches whose padded size stays within ``batch_tokens``.

    A single prompt longer than the budget still gets a batch of its own.
    """
    order = np.argsort(np.asarray(lengths), kind="stable")
    batches: list[np.ndarray] = []
    current: list[int] = []
    for index in order:
        width = lengths[index]
        if current and width * (len(current) + 1) > batch_tokens:
            batches.append(np.asarray(current))
            current = []
        current.append(int(index))
    if current:
        batches.append(np.asarray(current))
    return batches


def bucketed_batches(
    lengths: Sequence[int], batch_size: int, generator: torch.Generator
) -> list[np.ndarray]:
    """Training batches of ``batch_size`` drawn from length-sorted buckets, in a seeded order.

    The questions are shuffled, then sorted by length within windows of 50 batches, cut into
    batches, and the batches shuffled: little padding, yet every epoch sees a different order
    that depends only on ``generator`` (the member's seed).
    """
    n = len(lengths)
    perm = torch.randperm(n, generator=generator).numpy()
    window = batch_size * 50
    batches: list[np.ndarray] = []
    for start in range(0, n, window):
        chunk = perm[start : start + window]
        chunk = chunk[np.argsort(np.asarray(lengths)[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    order = torch.randperm(len(batches), generator=generator).numpy()
    return [batches[i] for i in order]


def shuffled_batches(
    lengths: Sequence[int], batch_size: int, generator: torch.Generator
) -> list[np.ndarray]:
    """Plain shuffled batches of ``batch_size``, as the paper's authors trained: each batch is a
    random draw of questions of any length (more padding than :func:`bucketed_batches`, and
    batches mix short and long prompts), in an order that depends only on ``generator``."""
    perm = torch.randperm(len(lengths), generator=generator).numpy()
    return [perm[i : i + batch_size] for i in range(0, len(perm), batch_size)]


#: ``train.batching``: how an epoch's questions are cut into batches.
BATCHINGS = {"bucketed": bucketed_batches, "shuffle": shuffled_batches}


def training_batches(
    lengths: Sequence[int], batch_size: int, batching: str, generator: torch.Generator
) -> list[np.ndarray]:
    """One epoch's batches the way ``train.batching`` names (the config checks the name)."""
    return BATCHINGS[batching](lengths, batch_size, generator)
