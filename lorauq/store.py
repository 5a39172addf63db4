"""The logits store and atomic file writes.

One tidy parquet table per member holds the letter logits of every (epoch, eval set,
question): small (K floats + one log-sum-exp per row), DVC-friendly, and enough to recompute
every metric without a GPU. Every file lorauq writes goes through :func:`atomic_path`, so a
killed run leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lorauq.errors import StoreError

#: Letters of the logit columns; a question has at most this many choices.
LETTERS = "abcdefghij"
MAX_CHOICES = len(LETTERS)
LOGIT_COLUMNS = [f"logit_{letter}" for letter in LETTERS]
KEY_COLUMNS = ["member", "epoch", "eval_set", "id"]
LOGITS_COLUMNS = [
    "member",
    "epoch",
    "eval_set",
    "id",
    "subject",
    "group",
    "answer",
    "n_choices",
    *LOGIT_COLUMNS,
    "logsumexp_vocab",
]
#: The member id under which the prior (epoch 0, the base model) is stored once.
PRIOR_MEMBER = -1
_INT_COLUMNS = ["member", "epoch", "answer", "n_choices"]
_STR_COLUMNS = ["eval_set", "id", "subject", "group"]
_FLOAT_COLUMNS = [*LOGIT_COLUMNS, "logsumexp_vocab"]


#: errno values that mean "the disk is full", not "this is a bug": reported as StoreError.
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
#: Names of the temporaries below: ``.<target>.<mkstemp/mkdtemp suffix>[.tmp]``.
_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}(\.tmp)?$")


def _disk_full(target: Path, exc: BaseException) -> StoreError | None:
    """A StoreError naming ``target`` if ``exc`` is a full disk or quota, else None."""
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
        return StoreError(
            f"{target}: no space left while writing ({exc.strerror}); the previous version, "
            "if any, is kept and the partial write was removed"
        )
    return None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds.

    The temporary file lives in the same folder, so the final ``os.replace`` is atomic on
    POSIX: readers see the old file or the complete new one. On any error the temporary
    file is removed and the old file is untouched; a full disk becomes a StoreError naming
    ``path`` (a bare ``OSError: [Errno 28]`` from inside pyarrow names no file).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        full = _disk_full(target, exc)
        if full is not None:
            raise full from exc
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it replaces ``path`` only if the block succeeds.

    A checkpoint or model folder is therefore complete or absent: a killed run never leaves
    a folder that looks finished. An existing ``path`` is first renamed aside (not deleted
    in place), so a kill during the swap leaves whole folders only, never a half-deleted one.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    old: Path | None = None
    try:
        yield tmp
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
            os.replace(target, old)  # an empty folder is replaced atomically on POSIX
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    except BaseException as exc:
        if old is not None and old.exists():
            if target.exists():
                shutil.rmtree(old, ignore_errors=True)
            else:  # failed between the two renames: put the previous folder back
                os.replace(old, target)
        shutil.rmtree(tmp, ignore_errors=True)
        full = _disk_full(target, exc)
        if full is not None:
            raise full from exc
        raise


def remove_stale_temps(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete temporaries that :func:`atomic_path`/:func:`atomic_dir` left in ``folder`` when
    their process was killed (SIGKILL runs no cleanup); return what was removed.

    Only call this where no other process writes into ``folder`` at the same time (a
    member's checkpoint folder belongs to its one training run).
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    removed = []
    for child in root.iterdir():
        if not _TEMP_NAME.match(child.name):
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
        removed.append(child)
    return removed


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def normalize_logits_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` with the store's columns, order and dtypes, or raise naming what is wrong.

    Missing ``logit_*`` columns past the widest question are added as NaN so tables of
    4-choice and 5-choice sets can be concatenated.
    """
    frame = frame.copy()
    for column in LOGIT_COLUMNS:
        if column not in frame.columns:
            frame[column] = np.nan
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
    if ((n_choices < 2) | (n_choices > MAX_CHOICES)).any():
        raise StoreError(f"{source}: n_choices outside 2..{MAX_CHOICES}")
    logits = frame[LOGIT_COLUMNS].to_numpy(dtype=np.float64)
    used = np.arange(MAX_CHOICES)[None, :] < n_choices[:, None]
    if not np.isfinite(logits[used]).all():
        bad = int(np.argmax(~np.isfinite(np.where(used, logits, 0.0)).all(axis=1)))
        raise StoreError(
            f"{source}: non-finite letter logit in row {bad} (id {frame['id'].iloc[bad]!r})"
        )
    if not np.isnan(logits[~used]).all():
        raise StoreError(f"{source}: logit columns past n_choices must be NaN")
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
