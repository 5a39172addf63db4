"""Train, and evaluate, the members of an ensemble together: one pass through the frozen base.

Member m trained here is member m of :func:`lorauq.train.train_member`, to float rounding:
the same initial A (peft's own init after ``torch.manual_seed(m)``), the same batches in the
same order (``bucketed_batches`` with the generator of (m, epoch)), its own loss (its
cross-entropy on its own batch + λ·Σ‖B·A‖²_F of its own weights), its own AdamW, its own
gradient-norm clip, its own loss scaler (float16) and its own dropout RNG. At every step the
members' batches are concatenated (left-padded to the widest; positions restart at each
row's first token, so the padding changes nothing) and run as one forward and one backward
through the base with stacked adapters (``lorauq.stacked``). Since the members' weights are
disjoint and rows do not interact, the gradient of the summed losses with respect to member
m's weights is the gradient of m's loss alone.

Why separate optimisers although AdamW is elementwise: one AdamW over all members would be
equivalent (its weight decay is decoupled, per element), but a clip over all members'
gradients would not, and per-member optimisers give each member's checkpoint exactly the
state_dict a single-member run writes. So the checkpoints are ``train_member``'s, file for
file: either function resumes the other's run.

The joint evaluation runs every question once per member in one batch through the stacked
adapters and writes each member's logits table as ``lorauq.infer.evaluate_member`` does
(resumable per (member, epoch) in the same hidden parts folder, under a fingerprint that
also covers this code, so parts of the two ways are never mixed).
"""

from __future__ import annotations

import contextlib
import copy
import shutil
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

import lorauq.stacked
from lorauq.batching import (
    bucketed_batches,
    budget_batches,
    collate_left,
    float32_head,
    last_position_logits,
    pad_multiple,
)
from lorauq.config import InferParams, LoraParams, TrainParams
from lorauq.errors import ConfigError, StoreError
from lorauq.infer import (
    adapter_epochs,
    encode_eval_sets,
    fingerprint,
    finished_part,
    inputs_digest,
    letter_frame,
    parts_dir,
    tag_table,
)
from lorauq.model import attach_lora
from lorauq.stacked import Route, StackedLora
from lorauq.store import read_logits, remove_stale_temps, write_logits
from lorauq.train import (
    EncodedQuestions,
    _epoch_generator,
    adamw,
    checkpoint_must_fit,
    encode_training_set,
    epoch_dir,
    epoch_log,
    loss_scaler,
    member_loss,
    optimizer_step,
    read_checkpoint,
    restore_optimizer,
    resume_point,
    training_state,
    write_checkpoint,
)


def _check_members(members: Sequence[int], paths: Sequence, what: str) -> list[Path]:
    if not members:
        raise ConfigError("members: at least one member is needed")
    if len(set(members)) != len(members):
        raise ConfigError(f"members {list(members)}: a member is listed twice")
    if len(paths) != len(members):
        raise ConfigError(f"{what}: {len(paths)} given for {len(members)} members {list(members)}")
    return [Path(p) for p in paths]


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


def _train_epoch(
    forward_model,
    stack: StackedLora,
    data: EncodedQuestions,
    slots: list[int],
    members: list[int],
    epoch: int,
    state: dict,
    train: TrainParams,
    *,
    pad_id: int,
    progress: bool,
) -> list[dict]:
    """One epoch of the members in ``slots``; their epoch logs, in slot order."""
    device, multiple = state["device"], state["multiple"]
    orders = [
        bucketed_batches(data.lengths, train.batch_size, _epoch_generator(members[j], epoch))
        for j in slots
    ]
    steps = len(orders[0])
    if any(len(order) != steps for order in orders):  # same n and batch size: cannot differ
        raise RuntimeError("members drew different numbers of batches")
    targets_all = torch.as_tensor(data.targets, dtype=torch.long)
    results: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in slots]
    tokens = [0] * len(slots)
    label = ",".join(str(members[j]) for j in slots)
    bar = tqdm(
        range(steps), desc=f"members {label} epoch {epoch}/{train.epochs}", disable=not progress
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
        logs.append(epoch_log(members[slot], epoch, losses, priors, tokens[j], elapsed))
    return logs


def train_members(
    base_model,
    tokenizer,
    train_frame: pd.DataFrame,
    *,
    members: Sequence[int],
    member_dirs: Sequence[str | Path],
    lora: LoraParams,
    train: TrainParams,
    template: str = "paper",
    progress: bool = True,
) -> list[list[dict]]:
    """Train ``members`` together for ``train.epochs`` epochs, resuming after the last epoch all
    of them completed; ``member_dirs[j]`` is member ``members[j]``'s checkpoint folder.

    Returns, per member, one log entry per epoch as ``train_member`` does (``elapsed_s`` is
    the joint epoch's time). Members at different epochs (a kill between two members' saves)
    restart together from the earliest; see the comment below. ``base_model`` is left as it
    was given (its layers put back, eval mode), so one loaded base can serve training and then
    evaluation.
    """
    members = list(members)
    member_dirs = _check_members(members, member_dirs, "member_dirs")
    if train.gradient_checkpointing and lora.dropout > 0:
        raise ConfigError(
            "train.gradient_checkpointing with lora.dropout > 0: joint training draws each "
            "member's dropout from its own generator, which checkpointing would not replay; "
            "train these members one at a time (train_member) or set lora.dropout to 0"
        )
    data = encode_training_set(tokenizer, train_frame, template, train.max_length)
    done, logs = [], []
    for member_dir in member_dirs:
        remove_stale_temps(member_dir)  # half-saved epochs of a killed run; never read anyway
        epochs, epoch_logs = resume_point(member_dir, train.epochs)
        done.append(epochs)
        logs.append(epoch_logs)
    lasts = [epochs[-1] if epochs else 0 for epochs in done]
    if min(lasts) >= train.epochs:
        return logs
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
            for epoch in range(start + 1, train.epochs + 1):
                slots = [j for j, begin in enumerate(begins) if begin < epoch]
                base_model.train()
                epoch_logs = _train_epoch(
                    forward_model,
                    stack,
                    data,
                    slots,
                    members,
                    epoch,
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

                    def save_adapter(folder: Path, slot: int = slot) -> None:
                        stack.save_adapter(slot, folder)

                    write_checkpoint(member_dirs[slot], epoch, save_adapter, saved, log)
                    logs[slot].append(log)
    finally:
        base_model.eval()
        stack.remove()
    return logs


# --- evaluation ------------------------------------------------------------------------------


@torch.inference_mode()
def stacked_letter_logits(
    model,
    stack: StackedLora,
    sequences: list[list[int]],
    letters: list[int],
    *,
    slots: list[int],
    pad_id: int,
    batch_tokens: int,
    desc: str = "evaluate",
    progress: bool = True,
    multiple: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Letter logits (S, n, K) and log-sum-exp (S, n) of every member in ``slots``.

    Each length-sorted batch of questions is repeated once per member and run as one pass;
    ``batch_tokens`` bounds the whole pass (so each member's share is batch_tokens / S),
    which keeps the memory of :func:`lorauq.infer.sequence_letter_logits` at the same budget.
    """
    device = next(model.parameters()).device
    n_slots = len(slots)
    letter_out = np.empty((n_slots, len(sequences), len(letters)), dtype=np.float32)
    lse_out = np.empty((n_slots, len(sequences)), dtype=np.float32)
    letter_index = torch.as_tensor(letters, device=device)
    lengths = [len(s) for s in sequences]
    multiple = multiple or pad_multiple(device)
    batches = budget_batches(lengths, max(1, batch_tokens // n_slots))
    with float32_head(model):
        for batch in tqdm(batches, desc=desc, disable=not progress):
            group = [sequences[i] for i in batch]
            inputs = collate_left(group * n_slots, pad_id, device, multiple)
            with stack.routed(Route(list(slots), [len(batch)] * n_slots)):
                logits = last_position_logits(model, *inputs).float()
            logits = logits.reshape(n_slots, len(batch), -1)
            letter_out[:, batch] = logits[..., letter_index].cpu().numpy()
            lse_out[:, batch] = torch.logsumexp(logits, dim=-1).cpu().numpy()
    return letter_out, lse_out


#: adapter_config.json keys that may differ between members evaluated together.
_FREE_CONFIG_KEYS = {"base_model_name_or_path", "revision", "inference_mode", "peft_version"}


def _shared_config(folders: Sequence[Path]):
    """The one LoRA config of every folder (all must agree but for provenance fields)."""
    from peft import LoraConfig

    first, reference = None, None
    for folder in folders:
        try:
            config = LoraConfig.from_pretrained(str(folder))
        except Exception as exc:
            raise StoreError(f"{folder}: adapter_config.json cannot be read ({exc})") from exc
        shape = {k: v for k, v in config.to_dict().items() if k not in _FREE_CONFIG_KEYS}
        if reference is None:
            first, reference, shared = folder, shape, config
        elif shape != reference:
            key = next(
                k for k in sorted(set(shape) | set(reference)) if shape.get(k) != reference.get(k)
            )
            raise StoreError(
                f"{folder}: adapter config differs from {first} in {key!r} "
                f"({shape.get(key)!r} vs {reference.get(key)!r}); evaluate members of different "
                "LoRA configs apart (lorauq.infer.evaluate_member)"
            )
    return shared


def evaluate_members(
    base_model,
    tokenizer,
    eval_sets: Mapping[str, pd.DataFrame],
    member_dirs: Sequence[str | Path],
    out_paths: Sequence[str | Path],
    *,
    members: Sequence[int],
    template: str = "paper",
    infer: InferParams | None = None,
    progress: bool = True,
) -> list[Path]:
    """Every saved epoch of every member on every eval set; at each epoch all members that have
    it run together. Writes ``out_paths[j]``, member ``members[j]``'s table, as
    ``lorauq.infer.evaluate_member`` would (its letter logits to float rounding).

    Finished (member, epoch) parts are kept in each member's parts folder, so a rerun after a
    kill evaluates only the rest. ``base_model`` is left as it was given.
    """
    from peft import get_peft_model

    members = list(members)
    member_dirs = _check_members(members, member_dirs, "member_dirs")
    out_paths = _check_members(members, out_paths, "out_paths")
    epochs = [adapter_epochs(member_dir) for member_dir in member_dirs]
    label = ",".join(str(m) for m in members)
    encoded = encode_eval_sets(
        tokenizer, eval_sets, template=template, infer=infer, prefix=f"members {label}"
    )
    code = (sys.modules[__name__], lorauq.stacked)
    inputs = inputs_digest(base_model, encoded, template, infer, code=code)
    tables: list[dict[int, pd.DataFrame]] = [{} for _ in members]
    todo: dict[int, list[int]] = {}
    parts: dict[tuple[int, int], Path] = {}
    for j, member in enumerate(members):
        for epoch in epochs[j]:
            folder = epoch_dir(member_dirs[j], epoch)
            part = parts_dir(out_paths[j]) / f"epoch-{epoch}-{fingerprint(folder, inputs)}.parquet"
            done = finished_part(part, member, epoch)
            if done is not None:
                if progress:
                    tqdm.write(f"member {member} epoch {epoch}: reusing {part}")
                tables[j][epoch] = done
            else:
                todo.setdefault(epoch, []).append(j)
                parts[(j, epoch)] = part
    if todo:
        config = _shared_config(
            [epoch_dir(member_dirs[j], e) for e, js in todo.items() for j in js]
        )
        infer = infer or InferParams()

        def attach(member: int):
            return get_peft_model(base_model, copy.deepcopy(config))

        stack = StackedLora(base_model, attach, members)
        try:
            base_model.eval()
            for epoch in sorted(todo):
                slots = todo[epoch]
                for j in slots:
                    folder = epoch_dir(member_dirs[j], epoch)
                    weights = _read_adapter(folder)
                    try:
                        stack.load_state_dict(j, weights)
                    except ValueError as exc:
                        raise StoreError(
                            f"{folder}: adapter cannot be loaded onto this base ({exc})"
                        ) from exc
                by_slot: dict[int, list[pd.DataFrame]] = {j: [] for j in slots}
                names = ",".join(str(members[j]) for j in slots)
                for name, enc in encoded.items():
                    letters, lse = stacked_letter_logits(
                        base_model,
                        stack,
                        enc.sequences,
                        enc.letters,
                        slots=slots,
                        pad_id=tokenizer.pad_token_id,
                        batch_tokens=infer.batch_tokens,
                        desc=f"members {names} epoch {epoch} {name}",
                        progress=progress,
                    )
                    for i, j in enumerate(slots):
                        table = letter_frame(enc, letters[i], lse[i])
                        by_slot[j].append(tag_table(table, members[j], epoch, name))
                for j in slots:
                    part = parts[(j, epoch)]
                    part.parent.mkdir(parents=True, exist_ok=True)
                    write_logits(pd.concat(by_slot[j], ignore_index=True), part)
                    tables[j][epoch] = read_logits(part)
        finally:
            stack.remove()
    written = []
    for j, out_path in enumerate(out_paths):
        ordered = [tables[j][epoch] for epoch in sorted(tables[j])]
        written.append(write_logits(pd.concat(ordered, ignore_index=True), out_path))
        shutil.rmtree(parts_dir(out_path), ignore_errors=True)
    return written


def _read_adapter(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(folder / lorauq.stacked.ADAPTER_FILE)
    except Exception as exc:
        raise StoreError(f"{folder}: adapter file unreadable ({exc})") from exc
