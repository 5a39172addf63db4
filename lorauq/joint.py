"""Train the members of an ensemble together: one pass through the frozen base per step.

Member m trained here is member m of :func:`lorauq.train.train_member`, to float rounding:
the same initial A (peft's own init after ``torch.manual_seed(m)``), the same batches in the
same order (``lorauq.schedule.step_batches`` from the generators of (the ensemble's order
stream, m, epoch)), its own loss (its cross-entropy on its own batch + λ·Σ‖B·A‖²_F of its
own weights), its own AdamW, its own gradient-norm clip, its own loss scaler (float16) and
its own dropout RNG. At every step the
members' batches are concatenated (left-padded to the widest; positions restart at each
row's first token, so the padding changes nothing) and run as one forward and one backward
through the base with stacked adapters (``lorauq.stacked``). Since the members' weights are
disjoint and rows do not interact, the gradient of the summed losses with respect to member
m's weights is the gradient of m's loss alone.

Why separate optimisers although AdamW is elementwise: one AdamW over all members would be
equivalent (its weight decay is decoupled, per element), but a clip over all members'
gradients would not, and per-member optimisers give each member's checkpoint exactly the
state_dict a single-member run writes. So the checkpoints are ``train_member``'s (``lorauq.checkpoints``), file for
file: either function resumes the other's run. (The joint evaluation of the same stacked
adapters is ``lorauq.infer.evaluate_members`` with ``infer.joint``.)
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pandas as pd
import torch

from lorauq.atomic import remove_stale_temps
from lorauq.batching import (
    collate_left,
    last_position_logits,
    pad_multiple,
)
from lorauq.checkpoints import (
    checkpoint_must_fit,
    epoch_dir,
    epoch_log,
    read_checkpoint,
    restore_optimizer,
    resume_point,
    training_state,
    write_checkpoint,
)
from lorauq.config import LoraParams, TrainParams
from lorauq.errors import ConfigError
from lorauq.float32_head import float32_head
from lorauq.lora import attach_lora
from lorauq.progress import progress_bar
from lorauq.schedule import checkpoint_steps, step_batches, steps_per_epoch
from lorauq.stacked import Route, StackedLora
from lorauq.train import (
    EncodedQuestions,
    adamw,
    checkpoint_label,
    encode_training_set,
    epoch_generator,
    loss_scaler,
    member_loss,
    optimizer_step,
)

__all__ = ["joint_step", "train_members"]


class _MemberRng:
    """Member m's own torch RNG, as a single-member run would hold it in torch's global one.

    The CPU generator continues from the state m's peft init left; on a GPU, LoRA dropout
    draws on the device, from a generator seeded with m (what ``torch.manual_seed(m)`` gave
    the global CUDA RNG). Saved under the keys ``train_member`` uses (one CUDA device).
    """

    def __init__(self, cpu_state: torch.Tensor, member: int, device: torch.device):
        self.cpu = torch.Generator()
        self.cpu.set_state(cpu_state)
        self.cuda = None
        if device.type == "cuda":
            self.cuda = torch.Generator(device).manual_seed(member)

    def generator(self) -> torch.Generator:
        return self.cuda if self.cuda is not None else self.cpu

    def cuda_states(self) -> list[torch.Tensor] | None:
        return None if self.cuda is None else [self.cuda.get_state()]

    def restore(self, state: dict) -> None:
        self.cpu.set_state(state["torch_rng"])
        if self.cuda is not None and state.get("cuda_rng"):
            self.cuda.set_state(state["cuda_rng"][0])


@contextlib.contextmanager
def _checkpointing(base_model, train: TrainParams) -> Iterator[None]:
    """Gradient checkpointing on the base for the block, if asked; the base is left as given."""
    if not train.gradient_checkpointing:
        yield
        return
    base_model.gradient_checkpointing_enable()
    base_model.enable_input_require_grads()
    try:
        yield
    finally:
        base_model.disable_input_require_grads()
        base_model.gradient_checkpointing_disable()


def joint_step(
    model,
    stack: StackedLora,
    slots: list[int],
    groups: list[list[list[int]]],
    targets: list[torch.Tensor],
    optimizers: list[torch.optim.Optimizer],
    scalers: list[torch.amp.GradScaler],
    generators: list[torch.Generator],
    train: TrainParams,
    *,
    pad_id: int,
    device: torch.device,
    multiple: int,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One optimiser step of every member in ``slots`` on its own batch (``groups[j]``: the
    token lists of slot ``slots[j]``), through one forward and one backward of the base.

    Returns each member's (cross-entropy, prior), detached; they stay on the device (one
    sync per epoch instead of one per member and step).
    """
    inputs = collate_left([s for group in groups for s in group], pad_id, device, multiple)
    counts = [len(group) for group in groups]
    widths = [-(-max(len(s) for s in group) // multiple) * multiple for group in groups]
    out: list[tuple[torch.Tensor, torch.Tensor]] = []
    totals = []
    with stack.routed(Route(slots, counts, widths, generators)):
        logits = last_position_logits(model, *inputs)
        row = 0
        for j, slot in enumerate(slots):
            pairs = stack.pairs(slot) if train.prior_lambda > 0 else []
            rows = logits[row : row + counts[j]]
            loss, prior, total = member_loss(rows, targets[j], pairs, train)
            totals.append(scalers[j].scale(total))
            out.append((loss.detach(), prior.detach()))
            row += counts[j]
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        torch.stack(totals).sum().backward()  # ∂/∂(member j) of the sum = ∂(loss j)
    for optimizer, scaler in zip(optimizers, scalers, strict=True):
        optimizer_step(optimizer, scaler, train.grad_clip)
    return out


def _member_generator(member: int, stream: int):
    return lambda epoch: epoch_generator(member, epoch, stream)


def _train_segment(
    forward_model,
    stack: StackedLora,
    data: EncodedQuestions,
    slots: list[int],
    members: list[int],
    index: int,
    marks: list[int],
    state: dict,
    train: TrainParams,
    *,
    pad_id: int,
    progress: bool,
) -> list[dict]:
    """The steps up to checkpoint ``index`` of the members in ``slots``; their logs, in slot
    order."""
    device, multiple = state["device"], state["multiple"]
    first = marks[index - 2] + 1 if index > 1 else 1
    orders = [
        list(
            step_batches(
                data.lengths,
                train,
                _member_generator(members[j], state["order_stream"]),
                first,
                marks[index - 1],
            )
        )
        for j in slots
    ]
    steps = len(orders[0])
    targets_all = torch.as_tensor(data.targets, dtype=torch.long)
    results: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in slots]
    tokens = [0] * len(slots)
    label = ",".join(str(members[j]) for j in slots)
    bar = progress_bar(
        range(steps), f"members {label} {checkpoint_label(train, index, marks)}", enabled=progress
    )
    start = time.perf_counter()
    for step in bar:
        batches = [order[step] for order in orders]
        groups = [[data.sequences[i] for i in batch] for batch in batches]
        step_out = joint_step(
            forward_model,
            stack,
            slots,
            groups,
            [targets_all[batch].to(device) for batch in batches],
            [state["optimizers"][j] for j in slots],
            [state["scalers"][j] for j in slots],
            [state["rngs"][j].generator() for j in slots],
            train,
            pad_id=pad_id,
            device=device,
            multiple=multiple,
        )
        for j, (loss, prior) in enumerate(step_out):
            results[j].append((loss, prior))
            tokens[j] += sum(len(s) for s in groups[j])
        if progress and step % 10 == 9:
            recent = torch.stack([loss for r in results for loss, _ in r[-10:]]).mean().item()
            bar.set_postfix(loss=f"{recent:.3f}", refresh=False)
    elapsed = time.perf_counter() - start
    logs = []
    for j, slot in enumerate(slots):
        losses = torch.stack([loss for loss, _ in results[j]]).tolist()
        priors = torch.stack([prior for _, prior in results[j]]).tolist()
        log = epoch_log(members[slot], index, losses, priors, tokens[j], elapsed, marks[index - 1])
        logs.append(log)
    return logs


def train_members(
    base_model,
    tokenizer,
    train_frame: pd.DataFrame,
    member_dirs: Mapping[int, str | Path],
    *,
    lora: LoraParams,
    train: TrainParams,
    template: str = "paper",
    progress: bool = True,
    order_stream: int = 0,
) -> dict[int, list[dict]]:
    """Train the members of ``member_dirs`` (member id → its checkpoint folder) together for
    ``train.epochs`` epochs or ``train.steps`` steps (checkpoints where
    :func:`lorauq.schedule.checkpoint_steps` puts them), resuming after the last checkpoint
    all of them completed.

    Returns, per member, one log entry per epoch as ``train_member`` does (``elapsed_s`` is
    the joint epoch's time). Members at different epochs (a kill between two members' saves)
    restart together from the earliest; see the comment below. ``base_model`` is left as it
    was given (its layers put back, eval mode), so one loaded base can serve training and then
    evaluation. ``order_stream``: the ensemble's part of the batch-order seed, as in
    ``train_member``.
    """
    if not member_dirs:
        raise ConfigError("train_members: no members given")
    members = [int(member) for member in member_dirs]
    member_dirs = [Path(folder) for folder in member_dirs.values()]
    if train.gradient_checkpointing and lora.dropout > 0:
        raise ConfigError(
            "train.gradient_checkpointing with lora.dropout > 0: joint training draws each "
            "member's dropout from its own generator, which checkpointing would not replay; "
            "train these members one after another (train.joint: false) or set lora.dropout to 0"
        )
    data = encode_training_set(tokenizer, train_frame, template, train.max_length)
    marks = checkpoint_steps(steps_per_epoch(data.lengths, train), train)
    done, logs = [], []
    for member_dir in member_dirs:
        remove_stale_temps(member_dir)  # half-saved epochs of a killed run; never read anyway
        epochs, epoch_logs = resume_point(member_dir, marks)
        done.append(epochs)
        logs.append(epoch_logs)
    lasts = [epochs[-1] if epochs else 0 for epochs in done]
    if min(lasts) >= len(marks):
        return dict(zip(members, logs, strict=True))
    # Every member restarts from the earliest epoch all of them have: a run killed between two
    # members' saves is then replayed in the same joint passes, bit for bit on CPU, instead of
    # finishing the late members in passes of another shape (which rounds differently). A
    # member replays epochs it already has without rewriting them; one without that epoch's
    # checkpoint starts from its own last one.
    start = min(lasts)
    begins = [start if start == 0 or start in epochs else epochs[-1] for epochs in done]
    device = next(base_model.parameters()).device
    stack = StackedLora(base_model, lambda m: attach_lora(base_model, lora, seed=m), members)
    try:
        state = {
            "device": device,
            "multiple": pad_multiple(device),
            "order_stream": order_stream,
            "optimizers": [adamw(stack.parameters(j), train) for j in range(len(members))],
            "scalers": [loss_scaler(base_model) for _ in members],
            "rngs": [_MemberRng(stack.rng_state(j), m, device) for j, m in enumerate(members)],
        }
        for j, begin in enumerate(begins):
            if begin:
                folder = epoch_dir(member_dirs[j], begin)
                weights, saved = read_checkpoint(folder)
                with checkpoint_must_fit(folder):
                    stack.load_state_dict(j, weights)
                    restore_optimizer(state["optimizers"][j], state["scalers"][j], saved)
                    state["rngs"][j].restore(saved)
        with _checkpointing(base_model, train), float32_head(base_model):
            forward_model = torch.compile(base_model) if train.compile else base_model
            for epoch in range(start + 1, len(marks) + 1):
                slots = [j for j, begin in enumerate(begins) if begin < epoch]
                base_model.train()
                epoch_logs = _train_segment(
                    forward_model,
                    stack,
                    data,
                    slots,
                    members,
                    epoch,
                    marks,
                    state,
                    train,
                    pad_id=tokenizer.pad_token_id,
                    progress=progress,
                )
                base_model.eval()
                for slot, log in zip(slots, epoch_logs, strict=True):
                    if epoch <= lasts[slot]:
                        continue  # replayed: the saved epoch stays as it is
                    saved = training_state(
                        state["optimizers"][slot],
                        state["scalers"][slot],
                        epoch,
                        state["rngs"][slot].cpu.get_state(),
                        state["rngs"][slot].cuda_states(),
                    )
                    write_checkpoint(member_dirs[slot], epoch, stack.adapter(slot), saved, log)
                    logs[slot].append(log)
    finally:
        base_model.eval()
        stack.remove()
    return dict(zip(members, logs, strict=True))
