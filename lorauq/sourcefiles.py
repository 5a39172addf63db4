"""Reading the files a source's rows come in: UTF-8 text, JSON lines or arrays, CSV, parquet.

Every loader (:mod:`lorauq.data`, :mod:`lorauq.twochoice`) reads files through these, so a
broken file is reported the same way whatever the source: the file, the 1-based line or row,
and what is wrong, never a bare ``UnicodeDecodeError`` or ``JSONDecodeError``. Each read file
is also described by a :class:`~lorauq.hub.SourceRead` with the SHA-256 of its bytes, which
``prepare`` records in the prepared data's manifest.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from lorauq.errors import DataError
from lorauq.hub import Located, SourceRead, bytes_sha256
from lorauq.questions import parquet_rows

__all__ = [
    "SPLIT_ALIASES",
    "SPLIT_FILE_NAMES",
    "SPLIT_FILE_SUFFIXES",
    "csv_records",
    "csv_rows",
    "file_items",
    "file_read",
    "int_or_raw",
    "json_objects",
    "local_items",
    "read_text",
    "split_file_pattern",
    "split_files",
]

#: Split names, with the aliases of the original releases (``dev``, ``val``).
SPLIT_ALIASES = {
    "train": "train",
    "validation": "validation",
    "dev": "validation",
    "val": "validation",
    "test": "test",
}
#: Names a split's files may carry in a folder.
SPLIT_FILE_NAMES = {
    "train": ("train",),
    "validation": ("validation", "dev", "val"),
    "test": ("test",),
}

#: The file types a source folder may hold its split files in.
SPLIT_FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")


def read_text(file: Path) -> str:
    """UTF-8 text of a file (a BOM is dropped); undecodable bytes are a DataError, not garbage."""
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise DataError(f"{file}: cannot read ({exc})") from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{file}: line {line}: not UTF-8 text (undecodable byte 0x{raw[exc.start]:02x} at "
            f"offset {exc.start}; re-save the file as UTF-8)"
        ) from exc


def json_objects(file: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(location, object) of each JSON line; a ``.json`` file may also hold one JSON array."""
    text = read_text(file)
    if file.suffix == ".json" and text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{file}: line {exc.lineno}: malformed JSON ({exc.msg})") from exc
        located = [(f"item {n}", item) for n, item in enumerate(items, start=1)]
    else:
        located = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                located.append((f"line {number}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise DataError(f"{file}: line {number}: malformed JSON ({exc.msg})") from exc
    for where, item in located:
        if not isinstance(item, dict):
            raise DataError(f"{file}: {where}: expected a JSON object, got {type(item).__name__}")
        yield where, item


def csv_rows(file: Path) -> Iterator[tuple[int, list[str]]]:
    """(first line number, fields) of each CSV record, with a real parser (quoted newlines)."""
    reader = csv.reader(io.StringIO(read_text(file), newline=""))
    line = 1
    try:
        for fields in reader:
            if fields:
                yield line, fields
            line = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"{file}: line {reader.line_num}: malformed CSV ({exc})") from exc


def csv_records(file: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """(location, {column: text}) of each record of a CSV file with a header row."""
    rows = list(csv_rows(file))
    if not rows:
        raise DataError(f"{file}: empty CSV file")
    header = [name.strip() for name in rows[0][1]]
    for index, (line, fields) in enumerate(rows[1:], start=1):
        where = f"row {index} (line {line})"
        if len(fields) != len(header):
            raise DataError(f"{file}: {where}: {len(fields)} fields, header has {len(header)}")
        yield where, dict(zip(header, fields, strict=True))


def file_items(file: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(location, row) of every row of a jsonl/json, parquet or headed CSV file."""
    if file.suffix == ".parquet":
        for number, item in enumerate(parquet_rows(file), start=1):
            yield f"row {number}", item
    elif file.suffix == ".csv":
        yield from csv_records(file)
    else:
        yield from json_objects(file)


def int_or_raw(text: str) -> int | str:
    """CSV answers arrive as text: an integer if it is one, else the text for the message."""
    stripped = text.strip()
    return int(stripped) if re.fullmatch(r"-?\d+", stripped) else text


def file_read(file: Path, *, source: str, split: str, rows: int) -> SourceRead:
    """What reading ``file`` for one split of ``source`` read: its path, rows and byte hash."""
    try:
        digest = bytes_sha256(file.read_bytes())
    except OSError as exc:
        raise DataError(f"{file}: cannot read ({exc})") from exc
    return SourceRead(source=source, split=split, path=str(file), rows=rows, sha256=digest)


def split_file_pattern(names: tuple[str, ...]) -> re.Pattern[str]:
    """Matches a file stem naming one of ``names`` as a whole word (``dev_rand_split``,
    ``validation-00000-of-00001``, ``ARC-Easy-Dev``), compared in lower case."""
    return re.compile(rf"(^|[-_.])({'|'.join(names)})([-_.]|$)")


def split_files(
    folder: Path,
    split: str,
    source: str,
    *,
    names: tuple[str, ...] | None = None,
    subfolders: Sequence[str] = (),
    exclude: str | None = None,
) -> list[Path]:
    """Files of one split in a folder: ``train.jsonl``, ``dev_rand_split.jsonl``,
    ``validation-00000-of-00001.parquet``, ``ARC-Easy-Dev.jsonl`` (also under a subfolder such
    as the config's, and under ``data/``); ``names`` overrides the names a split's file has,
    and a file whose name holds ``exclude`` is skipped."""
    names = names or SPLIT_FILE_NAMES[split]
    folders = [folder] + [folder / sub for sub in subfolders if (folder / sub).is_dir()]
    folders += [f / "data" for f in folders if (f / "data").is_dir()]
    pattern = split_file_pattern(names)
    found = [
        file
        for f in folders
        for file in sorted(f.iterdir())
        if file.is_file()
        and file.suffix in SPLIT_FILE_SUFFIXES
        and pattern.search(file.stem.lower())
        and not (exclude and exclude in file.name.lower())
    ]
    if not found:
        raise DataError(
            f"{folder}: no {split} file for {source} (looked in {[str(f) for f in folders]} for "
            f"{'/'.join('*' + s for s in SPLIT_FILE_SUFFIXES)} named after {', '.join(names)}, "
            f"e.g. {names[0]}.jsonl)"
        )
    return found


def local_items(
    path: str | os.PathLike[str],
    split: str,
    source: str,
    reads: list[SourceRead],
    **find: Any,
) -> Located:
    """The rows of the local file(s) of one split, each read appended to ``reads``: ``path`` is
    the split's file itself, or a folder searched by :func:`split_files` (``find``: its
    keyword arguments)."""
    root = Path(path)
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = split_files(root, split, source, **find)
    else:
        raise DataError(f"{root}: no such file or folder")
    located = []
    for file in files:
        items = list(file_items(file))
        reads.append(file_read(file, source=source, split=split, rows=len(items)))
        located.append((str(file), items))
    return located
