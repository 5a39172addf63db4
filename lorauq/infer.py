"""Letter logits of every (member, epoch, eval set, question), written to the logits store.

The base model is loaded once per process; every epoch's adapter of a member is loaded
into the same peft wrapper and switched with ``set_adapter`` (measured faster than peft's
mixed-adapter batches on CPU). The prior (epoch 0) is the base model itself, identical for
all members, so it is computed once and stored with member −1.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from lorauq.batching import (
    budget_batches,
    collate_left,
    float32_head,
    last_position_logits,
    pad_multiple,
)
from lorauq.config import InferParams
from lorauq.errors import DataError, StoreError
from lorauq.prompt import encode_prompts, letter_token_ids
from lorauq.store import LOGIT_COLUMNS, MAX_CHOICES, PRIOR_MEMBER, read_logits, write_logits
from lorauq.train import completed_epochs


@torch.inference_mode()
def sequence_letter_logits(
    model,
    sequences: list[list[int]],
    letters: list[int],
    *,
    pad_id: int,
    batch_tokens: int,
    desc: str = "evaluate",
    progress: bool = True,
    multiple: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Letter logits (n, len(letters)) and vocabulary log-sum-exp (n,) of token sequences.

    The model runs once per length-sorted batch of at most ``batch_tokens`` padded tokens and
    its LM head only at the last position (in float32 for a bfloat16/float16 base); only K + 1
    numbers per question leave the device.
    """
    device = next(model.parameters()).device
    letter_out = np.empty((len(sequences), len(letters)), dtype=np.float32)
    lse_out = np.empty(len(sequences), dtype=np.float32)
    letter_index = torch.as_tensor(letters, device=device)
    lengths = [len(s) for s in sequences]
    multiple = multiple or pad_multiple(device)
    with float32_head(model):
        for batch in tqdm(budget_batches(lengths, batch_tokens), desc=desc, disable=not progress):
            inputs = collate_left([sequences[i] for i in batch], pad_id, device, multiple)
            logits = last_position_logits(model, *inputs).float()
            letter_out[batch] = logits[:, letter_index].cpu().numpy()
            lse_out[batch] = torch.logsumexp(logits, dim=-1).cpu().numpy()
    return letter_out, lse_out


@dataclass(frozen=True)
class EncodedEvalSet:
    """An eval set's prompts as token ids, encoded once and shared by every epoch."""

    frame: pd.DataFrame
    sequences: list[list[int]]
    letters: list[int]
    n_choices: np.ndarray


def encode_eval_set(
    tokenizer,
    frame: pd.DataFrame,
    *,
    template: str = "paper",
    infer: InferParams | None = None,
    desc: str = "evaluate",
) -> EncodedEvalSet:
    """Token ids and letter ids of an eval set; an empty set or a too-long prompt fails here."""
    infer = infer or InferParams()
    if frame.empty:
        raise DataError(f"{desc}: the evaluation set is empty")
    n_choices = frame["choices"].map(len).to_numpy()
    letters = letter_token_ids(tokenizer, int(n_choices.max()), template=template)
    sequences = encode_prompts(tokenizer, frame.to_dict("records"), template)
    lengths = [len(s) for s in sequences]
    if max(lengths) > infer.max_length:
        i = int(np.argmax(lengths))
        raise DataError(
            f"{desc}: question {frame['id'].iloc[i]!r} is {lengths[i]} tokens, over infer.max_length={infer.max_length}"
        )
    return EncodedEvalSet(frame, sequences, letters, n_choices)


def encode_eval_sets(
    tokenizer,
    eval_sets: Mapping[str, pd.DataFrame],
    *,
    template: str,
    infer: InferParams | None,
    prefix: str,
) -> dict[str, EncodedEvalSet]:
    return {
        name: encode_eval_set(
            tokenizer, frame, template=template, infer=infer, desc=f"{prefix} {name}"
        )
        for name, frame in eval_sets.items()
    }


def letter_table(
    model,
    encoded: EncodedEvalSet,
    *,
    pad_id: int,
    infer: InferParams | None = None,
    desc: str = "evaluate",
    progress: bool = True,
) -> pd.DataFrame:
    """One row per question: its K letter logits (NaN past K) and the vocabulary log-sum-exp."""
    infer = infer or InferParams()
    letter_part, lse_out = sequence_letter_logits(
        model,
        encoded.sequences,
        encoded.letters,
        pad_id=pad_id,
        batch_tokens=infer.batch_tokens,
        desc=desc,
        progress=progress,
    )
    return letter_frame(encoded, letter_part, lse_out)


def letter_frame(
    encoded: EncodedEvalSet, letter_part: np.ndarray, lse_out: np.ndarray
) -> pd.DataFrame:
    """The logits-store rows of one eval set from its (n, K) letter logits and (n,) log-sum-exp."""
    letters, n_choices = encoded.letters, encoded.n_choices
    logits_out = np.full((len(n_choices), MAX_CHOICES), np.nan, dtype=np.float32)
    logits_out[:, : len(letters)] = letter_part
    logits_out[np.arange(MAX_CHOICES)[None, :] >= n_choices[:, None]] = np.nan
    table = encoded.frame[["id", "subject", "group", "answer"]].copy()
    table["n_choices"] = n_choices
    table[LOGIT_COLUMNS] = logits_out
    table["logsumexp_vocab"] = lse_out
    return table.reset_index(drop=True)


def letter_logits(
    model,
    tokenizer,
    frame: pd.DataFrame,
    *,
    template: str = "paper",
    infer: InferParams | None = None,
    desc: str = "evaluate",
    progress: bool = True,
) -> pd.DataFrame:
    """:func:`letter_table` of one eval set, encoded on the spot."""
    encoded = encode_eval_set(tokenizer, frame, template=template, infer=infer, desc=desc)
    return letter_table(
        model, encoded, pad_id=tokenizer.pad_token_id, infer=infer, desc=desc, progress=progress
    )


def _evaluate_all(
    model,
    encoded_sets: Mapping[str, EncodedEvalSet],
    *,
    pad_id: int,
    member: int,
    epoch: int,
    infer: InferParams | None,
    progress: bool,
) -> list[pd.DataFrame]:
    tables = []
    for name, encoded in encoded_sets.items():
        desc = f"{'prior' if member == PRIOR_MEMBER else f'member {member}'} epoch {epoch} {name}"
        table = letter_table(
            model, encoded, pad_id=pad_id, infer=infer, desc=desc, progress=progress
        )
        tables.append(tag_table(table, member, epoch, name))
    return tables


def tag_table(table: pd.DataFrame, member: int, epoch: int, eval_set: str) -> pd.DataFrame:
    """Prefix the key columns (member, epoch, eval_set) of the logits store, in place."""
    table.insert(0, "eval_set", eval_set)
    table.insert(0, "epoch", epoch)
    table.insert(0, "member", member)
    return table


def evaluate_prior(
    base_model,
    tokenizer,
    eval_sets: Mapping[str, pd.DataFrame],
    out_path: str | Path,
    *,
    template: str = "paper",
    infer: InferParams | None = None,
    progress: bool = True,
) -> Path:
    """Epoch 0 (the base model, no adapter) on every eval set, stored once with member −1."""
    encoded = encode_eval_sets(
        tokenizer, eval_sets, template=template, infer=infer, prefix="prior epoch 0"
    )
    tables = _evaluate_all(
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
    """Where a member's finished epochs wait until the whole table is written.

    Hidden beside the output (``.member-3.parts/``): DVC deletes a stage's declared outputs
    before rerunning it, not this folder, so a killed inference keeps its finished epochs,
    and nothing in it looks like a complete result.
    """
    return out_path.parent / f".{out_path.stem}.parts"


def inputs_digest(
    base_model,
    encoded_sets: Mapping[str, EncodedEvalSet],
    template: str,
    infer: InferParams | None,
    code: tuple = (),
) -> hashlib._Hash:
    """What every epoch's logits share: the exact token ids and letters fed to the model, the
    question tables copied into the output, the base's config and dtype, the settings, and the
    code and torch version that compute them (``code``: modules besides this one and
    ``lorauq.batching``, e.g. the joint evaluation's). Hashed once per member."""
    import lorauq.batching

    digest = hashlib.sha256()
    for module in (sys.modules[__name__], lorauq.batching, *code):
        digest.update(Path(module.__file__).read_bytes())
    digest.update(torch.__version__.encode())
    digest.update(base_model.config.to_json_string().encode())
    digest.update(str(next(base_model.parameters()).dtype).encode())
    digest.update(repr((template, dataclasses.replace(infer or InferParams(), threads=0))).encode())
    for name, encoded in encoded_sets.items():
        digest.update(name.encode())
        digest.update(repr(encoded.letters).encode())
        for sequence in encoded.sequences:
            digest.update(np.asarray(sequence, dtype=np.int64).tobytes())
        columns = encoded.frame[["id", "subject", "group", "answer"]]
        digest.update(pd.util.hash_pandas_object(columns, index=False).to_numpy().tobytes())
    return digest


def fingerprint(folder: Path, inputs: hashlib._Hash) -> str:
    """The inputs' digest plus the epoch's adapter: a part written under another fingerprint
    (a retrained adapter, another tokenizer, dtype, eval set or lorauq version) is never
    reused."""
    digest = inputs.copy()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        try:
            digest.update((folder / name).read_bytes())
        except OSError as exc:
            raise StoreError(f"{folder}: adapter file unreadable ({exc})") from exc
    return digest.hexdigest()[:16]


def finished_part(path: Path, member: int, epoch: int) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        table = read_logits(path)
    except StoreError:
        return None  # unreadable: evaluate the epoch again
    if set(table["member"]) != {member} or set(table["epoch"]) != {epoch}:
        return None
    return table


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
    progress: bool = True,
) -> Path:
    """Every saved epoch of one member on every eval set, from one loaded base model.

    Each finished epoch is written at once to :func:`parts_dir`; a rerun after a kill reuses
    the epochs whose adapter and settings are unchanged and evaluates only the rest. The
    member's table is written (atomically) when all epochs are done, then the parts go.
    """
    from peft import PeftModel

    member_dir, out_path = Path(member_dir), Path(out_path)
    epochs = adapter_epochs(member_dir)
    parts = parts_dir(out_path)
    model = None
    previous: str | None = None
    tables: list[pd.DataFrame] = []
    encoded = encode_eval_sets(
        tokenizer, eval_sets, template=template, infer=infer, prefix=f"member {member}"
    )
    inputs = inputs_digest(base_model, encoded, template, infer)
    for epoch in epochs:
        folder = member_dir / f"epoch-{epoch}"
        part = parts / f"epoch-{epoch}-{fingerprint(folder, inputs)}.parquet"
        done = finished_part(part, member, epoch)
        if done is not None:
            if progress:
                tqdm.write(f"member {member} epoch {epoch}: reusing {part}")
            tables.append(done)
            continue
        name = f"epoch-{epoch}"
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
        epoch_tables = _evaluate_all(
            model,
            encoded,
            pad_id=tokenizer.pad_token_id,
            member=member,
            epoch=epoch,
            infer=infer,
            progress=progress,
        )
        parts.mkdir(parents=True, exist_ok=True)
        write_logits(pd.concat(epoch_tables, ignore_index=True), part)
        tables.append(read_logits(part))
    written = write_logits(pd.concat(tables, ignore_index=True), out_path)
    shutil.rmtree(parts, ignore_errors=True)
    return written
