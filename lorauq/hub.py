"""Reading a dataset from the Hugging Face hub at a pinned revision, and recording what was read.

A hub dataset is a git repository: without a revision, ``datasets.load_dataset`` reads its
``main`` branch, whatever it holds today, and a paper number can move without a trace. So
every hub read here passes the revision the params pin (``data.*.revision``, a commit SHA),
and every read, hub or local file, is described by a :class:`SourceRead`: what was asked
for, how many rows came back and a SHA-256 of their content. ``prepare`` writes these into
``data/prepared/manifest.json``, so two runs that read different bytes give different
prepared data, which DVC then reports.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lorauq.errors import DataError, missing_hub_revision

__all__ = ["Located", "SourceRead", "bytes_sha256", "hub_items", "hub_rows", "rows_sha256"]

#: The rows of one split as read: (origin, [(location, row)]) per file or hub split, so a bad
#: row is reported with its file (or hub id) and its line or row number.
Located = list[tuple[str, list[tuple[str, dict[str, Any]]]]]


@dataclass(frozen=True)
class SourceRead:
    """One read of one split: a hub dataset at a revision, or a local file.

    ``sha256`` hashes what was read, before ``limit`` or any other cut: a local file's
    bytes, or a hub split's rows as ``datasets`` returned them (one JSON object per row,
    keys sorted; see :func:`rows_sha256`).
    """

    source: str
    split: str
    rows: int
    sha256: str
    hub_id: str | None = None
    config: str | None = None
    hub_split: str | None = None
    revision: str | None = None
    path: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The read as a JSON-ready dict with every field, so manifests share one schema."""
        return dataclasses.asdict(self)


def bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def rows_sha256(rows: Iterable[dict[str, Any]]) -> str:
    """SHA-256 of rows as canonical JSON lines (sorted keys, UTF-8): the same rows give the
    same hash on every machine, in whatever order their columns came."""
    digest = hashlib.sha256()
    for row in rows:
        line = json.dumps(row, sort_keys=True, ensure_ascii=False, default=str)
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


def hub_rows(
    hub_id: str, config: str | None, split: str, revision: str | None, *, source: str
) -> tuple[list[dict[str, Any]], SourceRead]:
    """The rows of one hub split at ``revision`` and the read's description.

    An unreachable or offline hub becomes a DataError pointing at ``path=``; a revision the
    repository does not have, one naming the dataset and the revision. ``trust_remote_code``
    is never passed: the sources used here are plain data repositories.
    """
    import datasets

    name = f"{hub_id}" + (f" (config {config})" if config else "")
    try:
        dataset = datasets.load_dataset(hub_id, config, split=split, revision=revision)
    except (OSError, ValueError) as exc:
        if missing_hub_revision(exc):
            raise DataError(
                f"{name}: revision {revision!r} does not exist on the Hugging Face hub "
                f"[{type(exc).__name__}: {exc}]; data.*.revision must be a commit (SHA) of the "
                "dataset repository"
            ) from exc
        if isinstance(exc, OSError):  # ConnectionError, OfflineModeIsEnabled, HTTP errors
            offline = os.environ.get("HF_HUB_OFFLINE", "0")
            raise DataError(
                f"cannot load {name} split {split!r} from the Hugging Face hub: the hub is "
                f"unreachable or offline (HF_HUB_OFFLINE={offline}) [{type(exc).__name__}: "
                f"{exc}]; pass path= to local files instead"
            ) from exc
        raise DataError(f"cannot load {name} split {split!r} from the hub: {exc}") from exc
    rows = dataset.to_list()
    read = SourceRead(
        source=source,
        split=split,
        rows=len(rows),
        sha256=rows_sha256(rows),
        hub_id=hub_id,
        config=config,
        hub_split=split,
        revision=revision,
    )
    return rows, read


def hub_items(
    source: str,
    hub_id: str,
    config: str | None,
    split: str,
    revision: str | None,
    reads: list[SourceRead],
) -> Located:
    """The rows of one hub split at ``revision``, its read appended to ``reads``."""
    rows, read = hub_rows(hub_id, config, split, revision, source=source)
    reads.append(read)
    origin = f"hub {hub_id}" + (f" ({config})" if config else "") + f" {split}"
    return [(origin, [(f"row {n}", row) for n, row in enumerate(rows, 1)])]
