"""The read-out engine: an eval set's prompts encoded once, and a model's letter-logits table.

Each question keeps the logits of its answer letters at the answer position and the
log-sum-exp of the full vocabulary there (the logits store's columns, ``lorauq.store``). The
model runs once per length-sorted batch under a token budget, its LM head at the last position
only (in float32 for a low-precision base); stacked members (``lorauq.stacked``) run in one
pass. What to evaluate and when (the prior, every epoch of every member, resuming after a
kill) is ``lorauq.infer``'s; the methods' posterior samples use the same tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from lorauq.batching import budget_batches, collate_left, last_position_logits, pad_multiple
from lorauq.config import InferParams
from lorauq.errors import DataError
from lorauq.float32_head import float32_head
from lorauq.progress import progress_bar
from lorauq.prompt import encode_prompts, letter_token_ids
from lorauq.schema import LOGIT_COLUMNS, MAX_CHOICES, PRIOR_MEMBER
from lorauq.stacked import Route, StackedLora

__all__ = [
    "EncodedEvalSet",
    "encode_eval_set",
    "encode_eval_sets",
    "evaluate_sets",
    "letter_frame",
    "letter_logits",
    "letter_table",
    "sequence_letter_logits",
    "stacked_letter_logits",
    "tag_table",
]


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
        for batch in progress_bar(
            budget_batches(lengths, batch_tokens), desc, enabled=progress, unit="batches"
        ):
            inputs = collate_left([sequences[i] for i in batch], pad_id, device, multiple)
            logits = last_position_logits(model, *inputs).float()
            letter_out[batch] = logits[:, letter_index].cpu().numpy()
            lse_out[batch] = torch.logsumexp(logits, dim=-1).cpu().numpy()
    return letter_out, lse_out


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
    """Letter logits (S, n, K) and log-sum-exp (S, n) of every stacked member in ``slots``.

    Each length-sorted batch of questions is repeated once per member and run as one pass;
    ``batch_tokens`` bounds the whole pass (so each member's share is batch_tokens / S),
    which keeps the memory of :func:`sequence_letter_logits` at the same budget.
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
        for batch in progress_bar(batches, desc, enabled=progress, unit="batches"):
            group = [sequences[i] for i in batch]
            inputs = collate_left(group * n_slots, pad_id, device, multiple)
            with stack.routed(Route(list(slots), [len(batch)] * n_slots)):
                logits = last_position_logits(model, *inputs).float()
            logits = logits.reshape(n_slots, len(batch), -1)
            letter_out[:, batch] = logits[..., letter_index].cpu().numpy()
            lse_out[:, batch] = torch.logsumexp(logits, dim=-1).cpu().numpy()
    return letter_out, lse_out


@dataclass(frozen=True)
class EncodedEvalSet:
    """An eval set's prompts as token ids, encoded once and shared by every epoch."""

    frame: pd.DataFrame
    sequences: list[list[int]]
    letters: list[int]
    n_choices: np.ndarray
    n_letters: np.ndarray


def encode_eval_set(
    tokenizer,
    frame: pd.DataFrame,
    *,
    template: str = "paper",
    infer: InferParams | None = None,
    stored_letters: int | None = None,
    desc: str = "evaluate",
) -> EncodedEvalSet:
    """Token ids and letter ids of an eval set; an empty set or a too-long prompt fails here.

    ``stored_letters`` K keeps the logits of the letters a… up to K for every question, also
    past a question's own choices (``data.stored_letters``); None keeps its choices' letters.
    """
    infer = infer or InferParams()
    if frame.empty:
        raise DataError(f"{desc}: the evaluation set is empty")
    n_choices = frame["choices"].map(len).to_numpy()
    if stored_letters is None:
        n_letters = n_choices
    elif (n_choices > stored_letters).any():
        i = int(np.argmax(n_choices))
        raise DataError(
            f"{desc}: question {frame['id'].iloc[i]!r} has {n_choices[i]} choices, more than "
            f"data.stored_letters={stored_letters} letters can answer"
        )
    else:
        n_letters = np.full_like(n_choices, stored_letters)
    letters = letter_token_ids(tokenizer, int(n_letters.max()), template=template)
    sequences = encode_prompts(tokenizer, frame.to_dict("records"), template)
    lengths = [len(s) for s in sequences]
    if max(lengths) > infer.max_length:
        i = int(np.argmax(lengths))
        raise DataError(
            f"{desc}: question {frame['id'].iloc[i]!r} is {lengths[i]} tokens, over infer.max_length={infer.max_length}"
        )
    return EncodedEvalSet(frame, sequences, letters, n_choices, n_letters)


def encode_eval_sets(
    tokenizer,
    eval_sets: Mapping[str, pd.DataFrame],
    *,
    template: str,
    infer: InferParams | None,
    stored_letters: int | None = None,
    prefix: str,
) -> dict[str, EncodedEvalSet]:
    return {
        name: encode_eval_set(
            tokenizer,
            frame,
            template=template,
            infer=infer,
            stored_letters=stored_letters,
            desc=f"{prefix} {name}",
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
    """One row per question: its letter logits (NaN past its ``n_letters``) and the vocabulary
    log-sum-exp."""
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
    """The logits-store rows of one eval set from its (n, K) letter logits and (n,) log-sum-exp
    (NaN past each question's ``n_letters``)."""
    letters, n_letters = encoded.letters, encoded.n_letters
    logits_out = np.full((len(n_letters), MAX_CHOICES), np.nan, dtype=np.float32)
    logits_out[:, : len(letters)] = letter_part
    logits_out[np.arange(MAX_CHOICES)[None, :] >= n_letters[:, None]] = np.nan
    table = encoded.frame[["id", "subject", "group", "answer"]].copy()
    table["n_choices"] = encoded.n_choices
    table["n_letters"] = n_letters
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


def evaluate_sets(
    model,
    encoded_sets: Mapping[str, EncodedEvalSet],
    *,
    pad_id: int,
    member: int,
    epoch: int,
    infer: InferParams | None,
    progress: bool,
) -> list[pd.DataFrame]:
    """One model's letter tables on every encoded eval set, keyed as ``member`` at ``epoch``:
    the prior, a member's epoch, or one posterior sample of a method."""
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
