"""Fine-tune one ensemble member: LoRA from its own seed, a checkpoint after every epoch (or
at named steps: ``train.steps``, ``lorauq.schedule``).

The loss is the paper's: cross-entropy over the full vocabulary at the answer position
only (plus the LoRA prior λ·Σ‖B·A‖²_F), so the forward pass applies the LM head at that one
position. Each epoch's folder holds peft's adapter files and the optimizer state; it is
written under a temporary name and renamed, so a killed run (even SIGKILL mid-epoch or
mid-save) resumes from its last complete epoch and ends bitwise identical, on CPU, to an
uninterrupted run.

What a resume restores is everything the next epoch depends on: the LoRA weights, AdamW's
moments and step counts, torch's CPU and CUDA RNGs (LoRA dropout) and, in a float16 run, the
loss scaler. The data order needs no state: each epoch draws it from a generator seeded by
(member, epoch) and, under ``train.batch_order: ensemble``, the ensemble, alone, and the
batch of a step is fixed by (member, step) with them. There is no learning-rate scheduler to save: the paper trains at a
constant learning rate.

The loss and the optimiser step are shared with ``lorauq.joint``, which trains several
members in one pass through the base; the checkpoint format both write is ``lorauq.checkpoints``.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from lorauq.atomic import remove_stale_temps
from lorauq.batching import (
    collate_left,
    last_position_logits,
    pad_multiple,
)
from lorauq.checkpoints import (
    epoch_dir,
    epoch_log,
    peft_adapter,
    restore_checkpoint,
    resume_point,
    training_state,
    write_checkpoint,
)
from lorauq.config import LoraParams, TrainParams
from lorauq.errors import DataError
from lorauq.float32_head import float32_head
from lorauq.lora import attach_lora, lora_pairs, pairs_prior
from lorauq.model import compute_dtype
from lorauq.progress import progress_bar
from lorauq.prompt import encode_prompts, letter_token_ids
from lorauq.schedule import checkpoint_steps, step_batches, steps_per_epoch

__all__ = [
    "EncodedQuestions",
    "adamw",
    "batch_order_stream",
    "checkpoint_label",
    "encode_training_set",
    "epoch_generator",
    "loss_scaler",
    "make_optimizer",
    "member_loss",
    "optimizer_step",
    "run_schedule",
    "train_member",
    "train_step",
]


@dataclass
class EncodedQuestions:
    """Prompts as token ids and the token id of each gold letter."""

    sequences: list[list[int]]
    targets: np.ndarray

    @property
    def lengths(self) -> list[int]:
        return [len(s) for s in self.sequences]


def encode_training_set(
    tokenizer, frame: pd.DataFrame, template: str, max_length: int
) -> EncodedQuestions:
    """Token ids of every training prompt and its gold letter; unlabelled or too long rows fail."""
    if (frame["answer"] < 0).any():
        row = int(np.argmax((frame["answer"] < 0).to_numpy()))
        raise DataError(f"training set row {row + 1} (id {frame['id'].iloc[row]!r}) has no answer")
    n_max = int(frame["choices"].map(len).max())
    letters = np.asarray(letter_token_ids(tokenizer, n_max, template=template))
    sequences = encode_prompts(tokenizer, frame.to_dict("records"), template)
    too_long = [i for i, s in enumerate(sequences) if len(s) > max_length]
    if too_long:
        i = too_long[0]
        raise DataError(
            f"training set row {i + 1} (id {frame['id'].iloc[i]!r}) is {len(sequences[i])} tokens, "
            f"over train.max_length={max_length}; raise it or drop the row"
        )
    return EncodedQuestions(sequences, letters[frame["answer"].to_numpy()])


def batch_order_stream(train: TrainParams, ensemble: str) -> int:
    """The ensemble's part of the batch-order seed (``train.batch_order``): 0 when every
    ensemble shares member m's orders, else a 31-bit CRC-32 of the ensemble's name (stable
    across machines and Python runs, unlike ``hash``), never 0."""
    if train.batch_order == "shared":
        return 0
    return (zlib.crc32(ensemble.encode("utf-8")) & 0x7FFF_FFFF) or 1


def epoch_generator(member: int, epoch: int, stream: int = 0) -> torch.Generator:
    """Data order depends on (stream, member, epoch) alone, so a resumed run draws the same
    batches; stream 0 (the shared order) keeps the seeds of (member, epoch) alone. Another
    stream hashes all three into 32 bits: torch's CPU generator (mt19937) keeps only the low
    32 bits of a seed, so a stream in the high bits would change nothing."""
    if stream == 0:
        return torch.Generator().manual_seed(1_000_003 * member + epoch)
    return torch.Generator().manual_seed(zlib.crc32(f"{stream}-{member}-{epoch}".encode()))


def checkpoint_label(train: TrainParams, index: int, marks: Sequence[int]) -> str:
    """What the progress line calls checkpoint ``index``: an epoch, or the step it ends at."""
    if train.steps is None:
        return f"epoch {index}/{len(marks)}"
    return f"steps to {marks[index - 1]}/{marks[-1]}"


def adamw(params: Iterable[torch.nn.Parameter], train: TrainParams) -> torch.optim.AdamW:
    """AdamW at a constant learning rate (the paper's: no schedule)."""
    return torch.optim.AdamW(list(params), lr=train.lr, weight_decay=train.weight_decay)


def make_optimizer(model, train: TrainParams) -> torch.optim.AdamW:
    """AdamW over the LoRA weights only."""
    return adamw((p for p in model.parameters() if p.requires_grad), train)


def loss_scaler(model) -> torch.amp.GradScaler:
    """Loss scaling for a float16 base, a no-op otherwise.

    float16 has 5 exponent bits: gradients below ~6e-8 flush to zero on their way back through
    a float16 base, and the LoRA weights (float32) would silently stop learning. The scaler
    multiplies the loss before backward, divides the LoRA gradients after, and skips a step
    whose gradients overflowed (halving the scale). bfloat16 and float32 have float32's exponent
    range and need none; a disabled scaler passes every call straight through.
    """
    device = next(model.parameters()).device
    return torch.amp.GradScaler(device.type, enabled=compute_dtype(model) == torch.float16)


def member_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
    train: TrainParams,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(cross-entropy, prior, total) of one member: the answer position's cross-entropy over the
    full vocabulary plus λ·Σ‖B·A‖²_F of the member's own (A, B) pairs."""
    loss = F.cross_entropy(logits.float(), targets)
    if train.prior_lambda > 0:
        prior = pairs_prior(pairs, device=loss.device)
    else:
        prior = torch.zeros((), device=loss.device)
    return loss, prior, loss + train.prior_lambda * prior


def optimizer_step(
    optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, grad_clip: float
) -> None:
    """Unscale, clip the norm of this optimiser's gradients alone, step (unless they overflowed)."""
    scaler.unscale_(optimizer)
    if grad_clip > 0:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    scaler.step(optimizer)
    scaler.update()


def train_step(
    model,
    optimizer: torch.optim.Optimizer,
    inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    targets: torch.Tensor,
    train: TrainParams,
    scaler: torch.amp.GradScaler | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on one left-padded batch; returns (cross-entropy, prior) detached.

    The loss reads the logits at the answer position only, so the LM head never produces the
    sequence × vocabulary tensor a causal-LM loss would. ``scripts/gpu_check.py`` and the
    benchmarks time this very function.
    """
    scaler = scaler or torch.amp.GradScaler(enabled=False)
    logits = last_position_logits(model, *inputs)
    pairs = lora_pairs(model) if train.prior_lambda > 0 else []
    loss, prior, total = member_loss(logits, targets, pairs, train)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(total).backward()
    optimizer_step(optimizer, scaler, train.grad_clip)
    return loss.detach(), prior.detach()


def train_member(
    base_model,
    tokenizer,
    train_frame: pd.DataFrame,
    *,
    member: int,
    member_dir: str | Path,
    lora: LoraParams,
    train: TrainParams,
    template: str = "paper",
    progress: bool = True,
    order_stream: int = 0,
) -> list[dict]:
    """Train member ``member`` for ``train.epochs`` epochs or ``train.steps`` steps, a
    checkpoint at each of :func:`lorauq.schedule.checkpoint_steps`, resuming after the last
    complete one.

    Returns one log entry per checkpoint (mean loss, prior term, seconds, tokens, its step)
    over the steps since the previous one. ``base_model`` is wrapped by peft in place; pass a
    fresh base for each member. ``order_stream`` is the ensemble's part of the batch-order
    seed (:func:`batch_order_stream`).
    """
    member_dir = Path(member_dir)
    data = encode_training_set(tokenizer, train_frame, template, train.max_length)
    remove_stale_temps(member_dir)  # half-saved epochs of a killed run; never read anyway
    model = attach_lora(base_model, lora, seed=member)
    if train.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    optimizer = make_optimizer(model, train)
    scaler = loss_scaler(model)
    marks = checkpoint_steps(steps_per_epoch(data.lengths, train), train)
    done, logs = resume_point(member_dir, marks)
    last = done[-1] if done else 0
    if last:
        restore_checkpoint(model, optimizer, scaler, epoch_dir(member_dir, last))
    with float32_head(model):
        # A compiled view shares the peft model's parameters; checkpoints use the peft model.
        forward_model = torch.compile(model) if train.compile else model
        logs += run_schedule(
            model,
            tokenizer.pad_token_id,
            data,
            train,
            marks,
            last,
            order=lambda epoch: epoch_generator(member, epoch, order_stream),
            step=lambda inputs, targets: train_step(
                forward_model, optimizer, inputs, targets, train, scaler
            ),
            state=lambda index: training_state(
                optimizer, scaler, index, torch.get_rng_state(), _cuda_rng()
            ),
            member_dir=member_dir,
            label=f"member {member}",
            member=member,
            progress=progress,
        )
    return logs


def _cuda_rng() -> list[torch.Tensor] | None:
    return torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None


def run_schedule(
    model,
    pad_id: int,
    data: EncodedQuestions,
    train: TrainParams,
    marks: Sequence[int],
    last: int,
    *,
    order: Callable[[int], torch.Generator],
    step: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    state: Callable[[int], dict],
    member_dir: Path,
    label: str,
    member: int,
    progress: bool,
) -> list[dict]:
    """Train ``model`` from checkpoint ``last`` to each later one of ``marks`` (the steps
    :func:`lorauq.schedule.checkpoint_steps` plans), one optimiser ``step`` per batch of the
    seeded ``order``, and write each checkpoint with the training ``state`` it returns: the
    one loop an AdamW member and an IVON member share (they differ in the step and the state).
    """
    device = next(model.parameters()).device
    multiple = pad_multiple(device)
    targets_all = torch.as_tensor(data.targets, dtype=torch.long)
    logs = []
    for index in range(last + 1, len(marks) + 1):
        model.train()
        first = marks[index - 2] + 1 if index > 1 else 1
        batches = list(step_batches(data.lengths, train, order, first, marks[index - 1]))
        losses, priors, tokens = [], [], 0
        start = time.perf_counter()  # tqdm's clock stands still when the bar is disabled
        bar = progress_bar(
            batches, f"{label} {checkpoint_label(train, index, marks)}", enabled=progress
        )
        for batch in bar:
            inputs = collate_left([data.sequences[i] for i in batch], pad_id, device, multiple)
            loss, prior = step(inputs, targets_all[batch].to(device))
            losses.append(loss.item())
            priors.append(prior.item())
            tokens += int(inputs[1].sum())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", refresh=False)
        elapsed = time.perf_counter() - start
        log = epoch_log(member, index, losses, priors, tokens, elapsed, marks[index - 1])
        model.eval()
        write_checkpoint(member_dir, index, peft_adapter(model), state(index), log)
        logs.append(log)
    return logs
