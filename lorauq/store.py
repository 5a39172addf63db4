"""The logits store: one tidy parquet table per member, checked on every write and read.

Each row holds the letter logits of one (member, epoch, eval set, question): small (K floats +
one log-sum-exp), DVC-friendly, and enough to recompute every metric without a GPU. Readers
rely on the invariants :func:`validate_logits` checks, so they are checked at both ends.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lorauq.atomic import atomic_path
from lorauq.errors import StoreError
from lorauq.schema import (
    KEY_COLUMNS,
    LOGIT_COLUMNS,
    LOGITS_COLUMNS,
    MAX_CHOICES,
    MIN_CHOICES,
    PRIOR_MEMBER,
)

__all__ = [
    "broadcast_prior",
    "normalize_logits_frame",
    "read_logits",
    "validate_logits",
    "write_logits",
]

_INT_COLUMNS = ["member", "epoch", "answer", "n_choices"]
_STR_COLUMNS = ["eval_set", "id", "subject", "group"]
_FLOAT_COLUMNS = [*LOGIT_COLUMNS, "logsumexp_vocab"]


def normalize_logits_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` with the store's columns, order and dtypes, or raise naming what is wrong.

    Missing ``logit_*`` columns past the widest question are added as NaN so tables of
    4-choice and 5-choice sets can be concatenated; a table without ``n_letters`` (written
    before letters beyond a question's choices could be stored) stores its choices' letters.
    """
    frame = frame.copy()
    for column in LOGIT_COLUMNS:
        if column not in frame.columns:
            frame[column] = np.nan
    if "n_letters" not in frame.columns and "n_choices" in frame.columns:
        frame["n_letters"] = frame["n_choices"]
    missing = [c for c in LOGITS_COLUMNS if c not in frame.columns]
    if missing:
        raise StoreError(f"logits table lacks column(s) {missing}; expected {LOGITS_COLUMNS}")
    frame = frame[LOGITS_COLUMNS]
    for column in _INT_COLUMNS:
        frame[column] = frame[column].astype("int64")
    for column in _STR_COLUMNS:
        frame[column] = frame[column].astype(str)
    for column in _FLOAT_COLUMNS:
        frame[column] = frame[column].astype("float32")
    return frame


def validate_logits(frame: pd.DataFrame, source: str = "logits table") -> None:
    """Check the invariants every reader relies on; raise :class:`StoreError` naming ``source``."""
    n_choices = frame["n_choices"].to_numpy()
    n_letters = frame["n_letters"].to_numpy()
    if ((n_choices < MIN_CHOICES) | (n_choices > MAX_CHOICES)).any():
        raise StoreError(f"{source}: n_choices outside {MIN_CHOICES}..{MAX_CHOICES}")
    if ((n_letters < n_choices) | (n_letters > MAX_CHOICES)).any():
        raise StoreError(f"{source}: n_letters outside n_choices..{MAX_CHOICES}")
    logits = frame[LOGIT_COLUMNS].to_numpy(dtype=np.float64)
    used = np.arange(MAX_CHOICES)[None, :] < n_letters[:, None]
    if not np.isfinite(logits[used]).all():
        bad = int(np.argmax(~np.isfinite(np.where(used, logits, 0.0)).all(axis=1)))
        raise StoreError(
            f"{source}: non-finite letter logit in row {bad} (id {frame['id'].iloc[bad]!r})"
        )
    if not np.isnan(logits[~used]).all():
        raise StoreError(f"{source}: logit columns past n_letters must be NaN")
    answers = frame["answer"].to_numpy()
    if ((answers < -1) | (answers >= n_choices)).any():
        raise StoreError(f"{source}: answer outside -1..n_choices-1")
    if frame.duplicated(KEY_COLUMNS).any():
        row = frame[frame.duplicated(KEY_COLUMNS, keep=False)].iloc[0]
        raise StoreError(
            f"{source}: duplicate key (member={row['member']}, epoch={row['epoch']}, "
            f"eval_set={row['eval_set']!r}, id={row['id']!r})"
        )


def write_logits(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Validate and write one logits table as parquet, atomically."""
    frame = normalize_logits_frame(frame)
    validate_logits(frame, str(path))
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return Path(path)


def read_logits(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
) -> pd.DataFrame:
    """Read logits into one checked table: a parquet file, every ``*.parquet`` in a folder,
    or a list of files (e.g. the prior plus the configured members only)."""
    if isinstance(source, (str, os.PathLike)):
        root = Path(source)
        if root.is_dir():
            files = sorted(root.glob("*.parquet"))
            if not files:
                raise StoreError(f"{root}: no *.parquet logits files in this folder")
        elif root.is_file():
            files = [root]
        else:
            raise StoreError(f"{root}: no such logits file or folder")
        label = str(root)
    else:
        files = [Path(f) for f in source]
        missing = [str(f) for f in files if not f.is_file()]
        if missing or not files:
            raise StoreError(
                f"logits file(s) missing: {missing or 'none given'}; run inference first (dvc repro)"
            )
        label = ", ".join(str(f) for f in files)
    frames = []
    for file in files:
        try:
            raw = pd.read_parquet(file)
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise StoreError(f"{file}: not a readable parquet file ({exc})") from exc
        try:
            frame = normalize_logits_frame(raw)
        except StoreError as exc:
            raise StoreError(f"{file}: {exc}") from exc
        frames.append(frame)
    table = broadcast_prior(pd.concat(frames, ignore_index=True))
    validate_logits(table, label)
    return table.sort_values(KEY_COLUMNS, kind="stable").reset_index(drop=True)


def broadcast_prior(table: pd.DataFrame) -> pd.DataFrame:
    """Give every member the prior's rows.

    Epoch 0 is the base model, the same for all members, so inference stores it once with
    member ``PRIOR_MEMBER`` (−1). Readers want every member to have an epoch 0, so those
    rows are copied to each member present; alone (no member yet) they stay as they are.
    """
    is_prior = table["member"] == PRIOR_MEMBER
    members = sorted(set(table.loc[~is_prior, "member"]))
    if not is_prior.any() or not members:
        return table
    prior = table[is_prior]
    copies = [prior.assign(member=m) for m in members]
    return pd.concat([table[~is_prior], *copies], ignore_index=True)
