"""The training schedule: which optimiser step each checkpoint is taken at, and which batch
each step trains on.

A member trains on one stream of batches: epoch 1's seeded order, then epoch 2's, and so on
(each drawn by :func:`lorauq.train.epoch_generator` from (member, epoch) alone). Training by
epochs (``train.epochs``) checkpoints at the end of each epoch of that stream; training by
steps (``train.steps``) stops after that many steps and checkpoints at each of
``train.checkpoint_steps`` and at the last step, so a step count that does not divide an
epoch goes on into the next epoch's order. Either way checkpoint k (the folder ``epoch-<k>``
and the logits' ``epoch`` column k) is taken at a known step, and the batch of any step is
a function of (member, step) alone: a resumed run draws the very batches it would have.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from lorauq.batching import training_batches
from lorauq.config import TrainParams

__all__ = ["checkpoint_steps", "step_batches", "steps_per_epoch"]


def steps_per_epoch(lengths: Sequence[int], train: TrainParams) -> int:
    """Batches in one epoch: the same for every member and epoch (n rows, fixed batch size)."""
    return len(training_batches(lengths, train.batch_size, train.batching, torch.Generator()))


def checkpoint_steps(per_epoch: int, train: TrainParams) -> list[int]:
    """The step after which checkpoint 1, 2, … is taken (the last one ends training)."""
    if train.steps is None:
        return [per_epoch * epoch for epoch in range(1, (train.epochs or 0) + 1)]
    return sorted(set(train.checkpoint_steps) | {train.steps})


def step_batches(
    lengths: Sequence[int],
    train: TrainParams,
    generator: Callable[[int], torch.Generator],
    first: int,
    last: int,
) -> Iterator[np.ndarray]:
    """The batches of steps ``first``…``last`` (1-based, inclusive) of one member's stream;
    ``generator(epoch)`` seeds that epoch's order. Each epoch's order is drawn once, when the
    stream reaches it."""
    per_epoch = steps_per_epoch(lengths, train)
    epoch, order = 0, []
    for step in range(first, last + 1):
        wanted = (step - 1) // per_epoch + 1
        if wanted != epoch:
            epoch = wanted
            order = training_batches(lengths, train.batch_size, train.batching, generator(epoch))
        yield order[(step - 1) % per_epoch]
