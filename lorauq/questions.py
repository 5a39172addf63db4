"""The Question table: the one contract every source's rows obey before training or inference.

Every source (hub datasets, the original release files, the user's own files, the synthetic
world) is turned into plain records and goes through :func:`questions_frame`, so a bad row is
reported with its file (or hub id), its 1-based row or line number and the reason, not as a
crash deep in a tokenizer. The prepared tables the pipeline keeps are parquet files written
and read here; a stage that only reads prepared tables needs nothing else of the data code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lorauq.atomic import atomic_path
from lorauq.errors import DataError
from lorauq.schema import MAX_CHOICES, MIN_CHOICES, QUESTION_COLUMNS

__all__ = [
    "Record",
    "existing_file",
    "is_int",
    "parquet_rows",
    "questions_frame",
    "read_prepared",
    "save_questions",
    "validate_questions",
]

#: One raw question before validation: the Question columns plus where it came from
#: (``_origin``: file or hub id; ``_where``: "row 3 (line 4)" / "line 7").
Record = dict[str, Any]


def validate_questions(frame: pd.DataFrame, origin: str = "questions") -> pd.DataFrame:
    """Check a Question table against the contract; return it normalised (columns, dtypes).

    Rows are numbered from 1 in messages, as a reader counts them in a file.
    """
    missing = [c for c in QUESTION_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{origin}: missing column(s) {missing}; expected {QUESTION_COLUMNS}")
    records = frame[QUESTION_COLUMNS].to_dict("records")
    for number, record in enumerate(records, start=1):
        record["_origin"], record["_where"] = origin, f"row {number}"
    return questions_frame(records)


def save_questions(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Validate and write a prepared Question table as parquet (``choices`` list<string>).

    Written atomically, so a killed ``prepare`` stage never leaves half a table for DVC.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = validate_questions(frame, str(path))
    schema = pa.schema(
        [(c, pa.string()) for c in QUESTION_COLUMNS[:5]]
        + [("choices", pa.list_(pa.string())), ("answer", pa.int64())]
    )
    columns = {c: frame[c].tolist() for c in QUESTION_COLUMNS}
    table = pa.table(columns, schema=schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def read_prepared(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a table written by :func:`save_questions`, checked again (it may be hand-edited)."""
    file = existing_file(path)
    rows = parquet_rows(file)
    missing = [c for c in QUESTION_COLUMNS if rows and c not in rows[0]]
    if missing:
        raise DataError(f"{file}: missing column(s) {missing}; expected {QUESTION_COLUMNS}")
    records = [
        {**{c: row[c] for c in QUESTION_COLUMNS}, "_origin": str(file), "_where": f"row {n}"}
        for n, row in enumerate(rows, start=1)
    ]
    return questions_frame(records)


# --------------------------------------------------------------------------- validation


def is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _row_problem(record: Record) -> str | None:
    """The first way a record breaks the Question contract, or None if it obeys it."""
    for column in ("id", "source", "subject", "group"):
        value = record.get(column)
        if not isinstance(value, str) or not value.strip():
            return f"{column} must be a non-empty string, got {value!r}"
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        return f"question must be a non-empty string, got {question!r}"
    choices = record.get("choices")
    if not isinstance(choices, (list, tuple, np.ndarray)):
        return f"choices must be a list of strings, got {type(choices).__name__}"
    if not MIN_CHOICES <= len(choices) <= MAX_CHOICES:
        return f"needs {MIN_CHOICES}-{MAX_CHOICES} choices, got {len(choices)}"
    for index, choice in enumerate(choices):
        if not isinstance(choice, str) or not choice.strip():
            return f"choice {index} must be a non-empty string, got {choice!r}"
    answer = record.get("answer")
    if not is_int(answer):
        return f"answer must be an integer (-1 = unlabelled), got {answer!r}"
    if not -1 <= int(answer) < len(choices):
        return f"answer {answer} outside -1..{len(choices) - 1} for {len(choices)} choices"
    return None


def _check_records(records: list[Record]) -> None:
    """The one validator every source goes through: contract per row, then unique ids."""
    first_seen: dict[str, Record] = {}
    for record in records:
        problem = _row_problem(record)
        if problem is not None:
            raise DataError(f"{record['_origin']}: {record['_where']}: {problem}")
        earlier = first_seen.setdefault(record["id"], record)
        if earlier is not record:
            raise DataError(
                f"{record['_origin']}: {record['_where']}: duplicate id {record['id']!r} "
                f"(first at {earlier['_origin']}: {earlier['_where']})"
            )


def questions_frame(records: list[Record]) -> pd.DataFrame:
    """Validate records and turn them into a Question table with stable dtypes."""
    _check_records(records)
    data = {column: [record[column] for record in records] for column in QUESTION_COLUMNS}
    data["choices"] = [list(choices) for choices in data["choices"]]
    data["answer"] = [int(answer) for answer in data["answer"]]
    frame = pd.DataFrame(data, columns=QUESTION_COLUMNS)
    frame["answer"] = frame["answer"].astype("int64")
    return frame


# --------------------------------------------------------------------------- files


def existing_file(path: str | os.PathLike[str] | None) -> Path:
    if path is None:
        raise DataError("this source reads a local file: pass path=")
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{file}: no such file")
    return file


def parquet_rows(file: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(file).to_pylist()
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise DataError(f"{file}: not a readable parquet file ({exc})") from exc
