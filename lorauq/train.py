"""Fine-tune one ensemble member: LoRA from its own seed, a checkpoint after every epoch.

The loss is the paper's: cross-entropy over the full vocabulary at the answer position
only (plus the LoRA prior λ·Σ‖B·A‖²_F), so the forward pass applies the LM head at that one
position. Each epoch's folder holds peft's adapter files and the optimizer state; it is
written under a temporary name and renamed, so a killed run (even SIGKILL mid-epoch or
mid-save) resumes from its last complete epoch and ends bitwise identical, on CPU, to an
uninterrupted run.

What a resume restores is everything the next epoch depends on: the LoRA weights, AdamW's
moments and step counts, and torch's CPU and CUDA RNGs (LoRA dropout). The data order needs no
state: each epoch draws it from a generator seeded by (member, epoch) alone. There is no
learning-rate scheduler to save: the paper trains at a constant learning rate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from lorauq.atomic import atomic_dir, remove_stale_temps
from lorauq.batching import bucketed_batches, collate_left, last_position_logits, pad_multiple
from lorauq.checkpoints import LOG_FILE, STATE_FILE, completed_epochs, epoch_dir
from lorauq.config import LoraParams, TrainParams
from lorauq.errors import DataError, StoreError
from lorauq.model import attach_lora, lora_prior
from lorauq.prompt import encode_prompts, letter_token_ids


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


def _epoch_generator(member: int, epoch: int) -> torch.Generator:
    """Data order depends on (member, epoch) alone, so a resumed run draws the same batches."""
    return torch.Generator().manual_seed(1_000_003 * member + epoch)


def _save_checkpoint(model, optimizer, member_dir: Path, epoch: int, log: dict) -> Path:
    target = epoch_dir(member_dir, epoch)
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        state = {
            "optimizer": optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "epoch": epoch,
        }
        if torch.cuda.is_available():  # LoRA dropout on a GPU draws from the CUDA RNG
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        torch.save(state, tmp / STATE_FILE)
        (tmp / LOG_FILE).write_text(json.dumps(log, indent=2))
    return target


def _restore_checkpoint(model, optimizer, folder: Path) -> None:
    """Load an epoch's adapter, optimizer and RNG state; any failure names the folder."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    try:
        weights = load_file(folder / "adapter_model.safetensors")
        state = torch.load(folder / STATE_FILE, weights_only=True, map_location="cpu")
    except Exception as exc:
        raise StoreError(
            f"{folder}: checkpoint cannot be read ({exc}); delete the folder to retrain"
        ) from exc
    try:
        # peft loads with strict=False but still raises on a shape mismatch.
        set_peft_model_state_dict(model, weights)
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise StoreError(
            f"{folder}: checkpoint does not fit this base model and LoRA config (trained on "
            f"another base, or other lora params?): {' '.join(str(exc).split())[:300]}; delete the "
            "member's folder to retrain"
        ) from exc


def make_optimizer(model, train: TrainParams) -> torch.optim.AdamW:
    """AdamW over the LoRA weights only, at a constant learning rate (the paper's: no schedule)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(trainable, lr=train.lr, weight_decay=train.weight_decay)


def train_step(
    model,
    optimizer: torch.optim.Optimizer,
    inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    targets: torch.Tensor,
    train: TrainParams,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on one left-padded batch; returns (cross-entropy, prior) detached.

    The loss reads the logits at the answer position only, so the LM head never produces the
    sequence × vocabulary tensor a causal-LM loss would. ``scripts/gpu_check.py`` and the
    benchmarks time this very function.
    """
    logits = last_position_logits(model, *inputs)
    loss = F.cross_entropy(logits.float(), targets)
    prior = lora_prior(model) if train.prior_lambda > 0 else torch.zeros((), device=loss.device)
    total = loss + train.prior_lambda * prior
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    if train.grad_clip > 0:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, train.grad_clip)
    optimizer.step()
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
) -> list[dict]:
    """Train member ``member`` for ``train.epochs`` epochs, resuming after the last complete one.

    Returns one log entry per epoch (mean loss, prior term, seconds, tokens). ``base_model``
    is wrapped by peft in place; pass a fresh base for each member.
    """
    member_dir = Path(member_dir)
    data = encode_training_set(tokenizer, train_frame, template, train.max_length)
    remove_stale_temps(member_dir)  # half-saved epochs of a killed run; never read anyway
    model = attach_lora(base_model, lora, seed=member)
    if train.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    optimizer = make_optimizer(model, train)
    # A compiled view shares the peft model's parameters; checkpoints use the peft model.
    forward_model = torch.compile(model) if train.compile else model
    done = [e for e in completed_epochs(member_dir) if e <= train.epochs]
    logs: list[dict] = []
    if done:
        last = done[-1]
        _restore_checkpoint(model, optimizer, epoch_dir(member_dir, last))
        logs = [json.loads((epoch_dir(member_dir, e) / LOG_FILE).read_text()) for e in done]
    start = done[-1] + 1 if done else 1
    device = next(model.parameters()).device
    multiple = pad_multiple(device)
    targets_all = torch.as_tensor(data.targets, dtype=torch.long)
    for epoch in range(start, train.epochs + 1):
        model.train()
        batches = bucketed_batches(data.lengths, train.batch_size, _epoch_generator(member, epoch))
        losses, priors, tokens = [], [], 0
        bar = tqdm(
            batches, desc=f"member {member} epoch {epoch}/{train.epochs}", disable=not progress
        )
        for batch in bar:
            inputs = collate_left(
                [data.sequences[i] for i in batch], tokenizer.pad_token_id, device, multiple
            )
            loss, prior = train_step(
                forward_model, optimizer, inputs, targets_all[batch].to(device), train
            )
            losses.append(loss.item())
            priors.append(prior.item())
            tokens += int(inputs[1].sum())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", refresh=False)
        log = {
            "member": member,
            "epoch": epoch,
            "loss": float(np.mean(losses)),
            "prior": float(np.mean(priors)),
            "tokens": tokens,
            "elapsed_s": float(bar.format_dict.get("elapsed", 0.0)),
        }
        model.eval()
        _save_checkpoint(model, optimizer, member_dir, epoch, log)
        logs.append(log)
    return logs
