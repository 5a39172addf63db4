"""Letter logits of every (member, epoch, eval set, question), written to the logits store.

This module orchestrates and caches; the read-out itself (encoding, batches, the letter
table) is ``lorauq.readout``.

The base model is loaded once per process. Its members' adapters are evaluated in one of two
ways (``infer.joint``), which write the same table to float rounding:

* in turn: every (member, epoch) adapter is loaded into the same peft wrapper and switched
  with ``set_adapter`` (measured faster than peft's mixed-adapter batches on CPU);
* jointly: at each epoch every member that has it is stacked on the base
  (``lorauq.stacked``) and each batch of questions runs once per member in one pass, so the
  base's weights are read once for all of them.

The prior (epoch 0) is the base model itself, identical for all members, so it is computed
once and stored with member −1.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import lorauq.readout
import lorauq.stacked
from lorauq.checkpoints import ADAPTER_FILE, completed_epochs, epoch_dir
from lorauq.config import InferParams
from lorauq.errors import ConfigError, StoreError
from lorauq.progress import progress_note
from lorauq.readout import (
    EncodedEvalSet,
    encode_eval_sets,
    evaluate_sets,
    letter_frame,
    stacked_letter_logits,
    tag_table,
)
from lorauq.schema import PRIOR_MEMBER
from lorauq.stacked import StackedLora
from lorauq.store import read_logits, write_logits

__all__ = [
    "adapter_epochs",
    "evaluate_in_turn",
    "evaluate_member",
    "evaluate_members",
    "evaluate_prior",
    "parts_dir",
]


def evaluate_prior(
    base_model,
    tokenizer,
    eval_sets: Mapping[str, pd.DataFrame],
    out_path: str | Path,
    *,
    template: str = "paper",
    infer: InferParams | None = None,
    stored_letters: int | None = None,
    progress: bool = True,
) -> Path:
    """Epoch 0 (the base model, no adapter) on every eval set, stored once with member −1."""
    encoded = encode_eval_sets(
        tokenizer,
        eval_sets,
        template=template,
        infer=infer,
        stored_letters=stored_letters,
        prefix="prior epoch 0",
    )
    tables = evaluate_sets(
        base_model,
        encoded,
        pad_id=tokenizer.pad_token_id,
        member=PRIOR_MEMBER,
        epoch=0,
        infer=infer,
        progress=progress,
    )
    return write_logits(pd.concat(tables, ignore_index=True), out_path)


def adapter_epochs(member_dir: Path) -> list[int]:
    epochs = completed_epochs(member_dir)
    if not epochs:
        raise StoreError(
            f"{member_dir}: no complete epoch checkpoints; run fine-tuning for this member first"
        )
    return epochs


def parts_dir(out_path: Path) -> Path:
    """Where finished (member, epoch) tables wait until the whole table is written.

    Hidden beside the output (``.members-0-4.parts/``): DVC deletes a stage's declared outputs
    before rerunning it, not this folder, so a killed inference keeps its finished epochs,
    and nothing in it looks like a complete result.
    """
    return out_path.parent / f".{out_path.stem}.parts"


def _inputs_digest(
    base_model,
    encoded_sets: Mapping[str, EncodedEvalSet],
    template: str,
    infer: InferParams,
    code: Sequence = (),
) -> hashlib._Hash:
    """What every epoch's logits share: the exact token ids and letters fed to the model, the
    question tables copied into the output, the base's config and dtype, the settings (with
    the way the members are evaluated, ``infer.joint``: the two ways round differently), and
    the code and torch version that compute them (``code``: modules besides this one, the
    read-out engine and what it runs). Hashed once per call."""
    import lorauq.batching
    import lorauq.float32_head

    digest = hashlib.sha256()
    engine = (lorauq.readout, lorauq.batching, lorauq.float32_head)
    for module in (sys.modules[__name__], *engine, *code):
        digest.update(Path(module.__file__).read_bytes())
    digest.update(torch.__version__.encode())
    digest.update(base_model.config.to_json_string().encode())
    digest.update(str(next(base_model.parameters()).dtype).encode())
    digest.update(repr((template, dataclasses.replace(infer, threads=0))).encode())
    for name, encoded in encoded_sets.items():
        digest.update(name.encode())
        digest.update(repr(encoded.letters).encode())
        digest.update(encoded.n_letters.astype(np.int64).tobytes())
        for sequence in encoded.sequences:
            digest.update(np.asarray(sequence, dtype=np.int64).tobytes())
        columns = encoded.frame[["id", "subject", "group", "answer"]]
        digest.update(pd.util.hash_pandas_object(columns, index=False).to_numpy().tobytes())
    return digest


def _fingerprint(folder: Path, inputs: hashlib._Hash) -> str:
    """The inputs' digest plus the epoch's adapter: a part written under another fingerprint
    (a retrained adapter, another tokenizer, dtype, eval set or lorauq version) is never
    reused."""
    digest = inputs.copy()
    for name in ("adapter_config.json", ADAPTER_FILE):
        try:
            digest.update((folder / name).read_bytes())
        except OSError as exc:
            raise StoreError(f"{folder}: adapter file unreadable ({exc})") from exc
    return digest.hexdigest()[:16]


def _finished_part(path: Path, member: int, epoch: int) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        table = read_logits(path)
    except StoreError:
        return None  # unreadable: evaluate the epoch again
    if set(table["member"]) != {member} or set(table["epoch"]) != {epoch}:
        return None
    return table


#: What :func:`evaluate_members` hands each finished (member, epoch): its tables, one per set.
_Store = Callable[[int, int, list[pd.DataFrame]], None]


def evaluate_in_turn(
    base_model,
    pad_id: int,
    encoded: Mapping[str, EncodedEvalSet],
    folders: Mapping[tuple[int, int], Path],
    infer: InferParams,
    progress: bool,
    store: _Store,
) -> None:
    """Each (member, epoch) adapter in turn, in one peft wrapper holding one adapter at a time."""
    from peft import PeftModel

    model = None
    previous: str | None = None
    for (member, epoch), folder in folders.items():
        name = f"member-{member}-epoch-{epoch}"
        try:
            if model is None:
                model = PeftModel.from_pretrained(
                    base_model, folder, adapter_name=name, is_trainable=False
                )
            else:
                model.load_adapter(folder, adapter_name=name, is_trainable=False)
        except Exception as exc:
            raise StoreError(f"{folder}: adapter cannot be loaded onto this base ({exc})") from exc
        model.set_adapter(name)
        if previous is not None:
            model.delete_adapter(previous)  # keep one adapter in memory: 7B adapters add up
        previous = name
        model.eval()
        tables = evaluate_sets(
            model,
            encoded,
            pad_id=pad_id,
            member=member,
            epoch=epoch,
            infer=infer,
            progress=progress,
        )
        store(member, epoch, tables)


#: adapter_config.json keys that may differ between members evaluated together.
_FREE_CONFIG_KEYS = {"base_model_name_or_path", "revision", "inference_mode", "peft_version"}


def _shared_config(folders: Sequence[Path]):
    """The one LoRA config of every folder (all must agree but for provenance fields): the
    stacked layers are built once, from it, for every member."""
    from peft import LoraConfig

    first, reference, shared = None, None, None
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
                f"({shape.get(key)!r} vs {reference.get(key)!r}); members of different LoRA "
                "configs cannot be evaluated jointly (set infer.joint: false)"
            )
    return shared


def _read_adapter(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(folder / ADAPTER_FILE)
    except Exception as exc:
        raise StoreError(f"{folder}: adapter file unreadable ({exc})") from exc


def _evaluate_jointly(
    base_model,
    pad_id: int,
    encoded: Mapping[str, EncodedEvalSet],
    folders: Mapping[tuple[int, int], Path],
    infer: InferParams,
    progress: bool,
    store: _Store,
) -> None:
    """Epoch by epoch, every member that has the epoch in one pass through stacked adapters;
    the base is put back as it was given afterwards."""
    from peft import get_peft_model

    members = list(dict.fromkeys(member for member, _ in folders))
    config = _shared_config(list(folders.values()))
    stack = StackedLora(
        base_model, lambda member: get_peft_model(base_model, copy.deepcopy(config)), members
    )
    slot_of = {member: slot for slot, member in enumerate(members)}
    try:
        base_model.eval()
        for epoch in sorted({epoch for _, epoch in folders}):
            todo = [member for member in members if (member, epoch) in folders]
            for member in todo:
                folder = folders[(member, epoch)]
                try:
                    stack.load_state_dict(slot_of[member], _read_adapter(folder))
                except ValueError as exc:
                    raise StoreError(
                        f"{folder}: adapter cannot be loaded onto this base ({exc})"
                    ) from exc
            tables: dict[int, list[pd.DataFrame]] = {member: [] for member in todo}
            label = ",".join(str(member) for member in todo)
            for name, enc in encoded.items():
                letters, lse = stacked_letter_logits(
                    base_model,
                    stack,
                    enc.sequences,
                    enc.letters,
                    slots=[slot_of[member] for member in todo],
                    pad_id=pad_id,
                    batch_tokens=infer.batch_tokens,
                    desc=f"members {label} epoch {epoch} {name}",
                    progress=progress,
                )
                for i, member in enumerate(todo):
                    table = letter_frame(enc, letters[i], lse[i])
                    tables[member].append(tag_table(table, member, epoch, name))
            for member in todo:
                store(member, epoch, tables[member])
    finally:
        stack.remove()


def evaluate_members(
    base_model,
    tokenizer,
    eval_sets: Mapping[str, pd.DataFrame],
    member_dirs: Mapping[int, str | Path],
    out_path: str | Path,
    *,
    template: str = "paper",
    infer: InferParams | None = None,
    stored_letters: int | None = None,
    progress: bool = True,
) -> Path:
    """Every saved epoch of each member on every eval set, from one loaded base model, into
    one table (rows by member, then epoch, then eval set).

    The members share a LoRA configuration (one ensemble). With ``infer.joint`` and more than
    one member, all members that have an epoch run in one pass through stacked adapters;
    otherwise one peft wrapper takes each (member, epoch) adapter in turn. The two ways write
    the same rows, their letter logits equal to float rounding. Each finished (member, epoch)
    is written at once to :func:`parts_dir`; a rerun after a kill reuses those whose adapter
    and settings (the way of evaluating among them) are unchanged and evaluates only the
    rest. The table is written (atomically) when all are done, then the parts go.
    """
    if not member_dirs:
        raise ConfigError("evaluate_members: no members given")
    infer = infer or InferParams()
    out_path = Path(out_path)
    parts = parts_dir(out_path)
    member_dirs = {int(member): Path(folder) for member, folder in member_dirs.items()}
    epochs = {member: adapter_epochs(folder) for member, folder in member_dirs.items()}
    joint = infer.joint and len(member_dirs) > 1
    encoded = encode_eval_sets(
        tokenizer,
        eval_sets,
        template=template,
        infer=infer,
        stored_letters=stored_letters,
        prefix="evaluate",
    )
    inputs = _inputs_digest(
        base_model,
        encoded,
        template,
        dataclasses.replace(infer, joint=joint),
        code=(lorauq.stacked,) if joint else (),
    )
    tables: dict[tuple[int, int], pd.DataFrame] = {}
    todo: dict[tuple[int, int], Path] = {}
    part_of: dict[tuple[int, int], Path] = {}
    for member, member_epochs in epochs.items():
        for epoch in member_epochs:
            folder = epoch_dir(member_dirs[member], epoch)
            part = parts / f"member-{member}-epoch-{epoch}-{_fingerprint(folder, inputs)}.parquet"
            done = _finished_part(part, member, epoch)
            if done is not None:
                progress_note(f"member {member} epoch {epoch}: reusing {part}", enabled=progress)
                tables[(member, epoch)] = done
            else:
                todo[(member, epoch)] = folder
                part_of[(member, epoch)] = part

    def store(member: int, epoch: int, epoch_tables: list[pd.DataFrame]) -> None:
        part = part_of[(member, epoch)]
        parts.mkdir(parents=True, exist_ok=True)
        write_logits(pd.concat(epoch_tables, ignore_index=True), part)
        tables[(member, epoch)] = read_logits(part)  # as a resumed run reads it back

    if todo:
        evaluate = _evaluate_jointly if joint else evaluate_in_turn
        evaluate(base_model, tokenizer.pad_token_id, encoded, todo, infer, progress, store)
    ordered = [tables[(member, epoch)] for member in epochs for epoch in epochs[member]]
    written = write_logits(pd.concat(ordered, ignore_index=True), out_path)
    shutil.rmtree(parts, ignore_errors=True)
    return written


def evaluate_member(
    base_model,
    tokenizer,
    eval_sets: Mapping[str, pd.DataFrame],
    member_dir: str | Path,
    out_path: str | Path,
    *,
    member: int,
    template: str = "paper",
    infer: InferParams | None = None,
    stored_letters: int | None = None,
    progress: bool = True,
) -> Path:
    """:func:`evaluate_members` of one member."""
    return evaluate_members(
        base_model,
        tokenizer,
        eval_sets,
        {member: member_dir},
        out_path,
        template=template,
        infer=infer,
        stored_letters=stored_letters,
        progress=progress,
    )
