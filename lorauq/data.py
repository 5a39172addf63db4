"""Load multiple-choice sources into Question tables (see :mod:`lorauq.questions`).

Hub datasets, the original release files, the user's own csv/jsonl/parquet and the synthetic
world all become plain records first and then go through the one Question validator. The
hub is only one way in: every hub source also reads local files (``path=``), because the
default machine has no network. A hub read passes the pinned ``revision`` and every read is
recorded (:class:`~lorauq.hub.SourceRead`), so the prepared data can say what it was made of.

One job at this length: one loader per source, all ending in the same records; the file
readers (``sourcefiles``), the hub (``hub``) and the two-choice tasks (``twochoice``) are apart.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lorauq.errors import DataError, did_you_mean
from lorauq.hub import SourceRead, hub_items, hub_rows, rows_sha256
from lorauq.questions import Record, existing_file, is_int, parquet_rows, questions_frame
from lorauq.schema import LETTERS, MAX_CHOICES, MIN_CHOICES, QUESTION_COLUMNS
from lorauq.sourcefiles import (
    SPLIT_ALIASES,
    csv_rows,
    file_read,
    int_or_raw,
    json_objects,
    local_items,
)
from lorauq.subjects import mmlu_group_of, mmlu_subjects
from lorauq.tiny.world import WorldSpec, synthetic_questions
from lorauq.twochoice import TWO_CHOICE_HUB, TWO_CHOICE_SPLITS, load_two_choice

__all__ = [
    "FILE_SOURCES",
    "HUB_SOURCES",
    "MMLU_CSV_HEADER",
    "MMLU_HUB_ID",
    "PINNED_REVISIONS",
    "SOURCES",
    "SOURCE_SPLITS",
    "LoadedSource",
    "check_split",
    "load_questions",
    "load_source",
    "user_answer",
]

#: Hub id and config of the sources whose rows carry ``choices: {label, text}`` and
#: ``answerKey`` (the hub schema) or ``question: {stem, choices: [...]}`` (original releases).
_KEYED_HUB = {
    "commonsense_qa": ("tau/commonsense_qa", None),
    "arc_easy": ("allenai/ai2_arc", "ARC-Easy"),
    "arc_challenge": ("allenai/ai2_arc", "ARC-Challenge"),
    "openbookqa": ("allenai/openbookqa", "main"),
}
MMLU_HUB_ID = "cais/mmlu"
HUB_SOURCES = ("commonsense_qa", "mmlu", "arc_easy", "arc_challenge", "openbookqa", *TWO_CHOICE_HUB)
FILE_SOURCES = ("jsonl", "csv", "parquet")
SOURCES = (*HUB_SOURCES, "synthetic", *FILE_SOURCES)

#: The splits each hub source has (MMLU's are its release folders: dev, val, test), so a
#: split a source lacks is refused before any file or hub is touched, naming both.
SOURCE_SPLITS: dict[str, tuple[str, ...]] = {
    **{source: ("train", "validation", "test") for source in _KEYED_HUB},
    "mmlu": ("dev", "val", "test"),
    **TWO_CHOICE_SPLITS,
}
#: MMLU split (as in the release folders) → the ``cais/mmlu`` split name.
_MMLU_SPLITS = {"dev": "dev", "val": "validation", "test": "test"}
_MMLU_SPLIT_ALIASES = {"validation": "val"}
MMLU_CSV_HEADER = ["question", "choice0", "choice1", "choice2", "choice3", "answer"]
#: MMLU's release files give the answer as an upper-case letter.
_MMLU_LETTERS = LETTERS.upper()[:4]

#: The hub commits this project pins, per dataset repository. None of these hubs is reachable
#: from the machines the project is built on, so each SHA was taken from public code that
#: pins the same repository (found by exact-string search of public GitHub sources), never
#: guessed. A profile states its revision itself (``data.*.revision``); these are the values
#: to copy (docs/params.md lists them per task of the Bayesian-LoRA protocol).
PINNED_REVISIONS: dict[str, str] = {
    # the paper profile's pins; public dataset-conversion code pins both at the same commits
    "tau/commonsense_qa": "94630fe30dad47192a8546eb75f094926d47e155",
    "cais/mmlu": "c30699e8356da336a370243923dbaf21066bb9fe",
    # the same conversion code (its ARC-Challenge and ARC-Easy sources, and OpenBookQA "main")
    "allenai/ai2_arc": "210d026faf9955653af8916fad021475a3f00453",
    "allenai/openbookqa": "388097ea7776314e93a529163e0fea805b8a6454",
    # several public evaluation suites pin WinoGrande (winogrande_xl) at this commit
    "allenai/winogrande": "01e74176c63542e6b0bcb004dcdea22d94fb67b5",
    # a public pin table of dataset sources (data/train-00000-of-00001.parquet at this commit)
    "google/boolq": "35b264d03638db9f4ce671b711558bf7ff0f80d5",
}


@dataclass(frozen=True)
class LoadedSource:
    """A source's validated Question table and every read it was made of."""

    frame: pd.DataFrame
    reads: tuple[SourceRead, ...]


# --------------------------------------------------------------------------- public API


def load_source(
    source: str,
    split: str,
    *,
    path: str | os.PathLike[str] | None = None,
    group: str | None = None,
    subjects: Sequence[str] | None = None,
    world: WorldSpec | None = None,
    revision: str | None = None,
) -> LoadedSource:
    """Load one split of a source as a validated Question table (columns ``QUESTION_COLUMNS``),
    with what was read to make it.

    ``split`` may join parts with ``+`` (``"dev+val"``: the paper's MMLU training set).
    ``group``/``subjects`` select MMLU subjects (or filter the ``group``/``subject`` columns
    of the user's own files); other sources have no subjects to select. ``world`` is the
    synthetic world to generate (``source="synthetic"``; its default world when omitted).
    ``revision`` is the hub commit every hub read passes to ``datasets.load_dataset``; local
    files (``path``) are read as they are.
    """
    if source not in SOURCES:
        raise DataError(
            f"unknown source {source!r}{did_you_mean(source, SOURCES, cutoff=0)} (valid: {SOURCES})"
        )
    if source == "synthetic":
        if path is not None:
            raise DataError("source 'synthetic' is generated, not read: it takes no path=")
        frame = synthetic_questions(split, spec=world)
        records = frame[QUESTION_COLUMNS].to_dict("records")
        read = SourceRead(source, split, rows=len(frame), sha256=rows_sha256(records))
        return LoadedSource(frame, (read,))
    if (group is not None or subjects is not None) and source not in ("mmlu", *FILE_SOURCES):
        raise DataError(f"source {source!r} has no subjects: group= and subjects= apply to mmlu")
    parts = [part.strip() for part in str(split).split("+")]
    if not all(parts):
        raise DataError(f"bad split {split!r}: empty split name")
    records: list[Record] = []
    reads: list[SourceRead] = []
    for part in parts:
        records.extend(_load_part(source, part, path, group, subjects, revision, reads))
    frame = questions_frame(records)
    if frame.empty:
        raise DataError(
            f"{source} split {split!r}{f' from {path}' if path else ''}: no questions "
            f"(group={group!r}, subjects={subjects!r})"
        )
    return LoadedSource(frame, tuple(reads))


def load_questions(source: str, split: str, **options: Any) -> pd.DataFrame:
    """The Question table of :func:`load_source` (same arguments: ``path``, ``group``,
    ``subjects``, ``world``, ``revision``), without the record of what was read."""
    return load_source(source, split, **options).frame


def check_split(source: str, split: str) -> str:
    """The canonical name of ``split`` for a hub source, or a DataError naming the source, the
    split and the splits it has (BoolQ has no test split, MMLU no train split, …)."""
    splits = SOURCE_SPLITS[source]
    canonical = (_MMLU_SPLIT_ALIASES if source == "mmlu" else SPLIT_ALIASES).get(split, split)
    if canonical not in splits:
        hint = " (the paper trains on 'dev+val')" if source == "mmlu" and split == "train" else ""
        raise DataError(
            f"{source} has no split {split!r}{did_you_mean(split, splits)}; its splits: "
            f"{', '.join(splits)}{hint}"
        )
    return canonical


# --------------------------------------------------------------------------- the user's files


def user_answer(answer: Any, choices: Any, *, file: Path, where: str) -> Any:
    """A user file's gold answer as the 0-based index the Question table holds.

    People write answers either way: as an index (``1``) or as the letter the prompt shows
    (``B``, ``b`` or ``(b)``), so a letter becomes its index; a letter past the row's last
    choice, or text that is neither, names the row. Anything else (an int, a missing value)
    is left to the row checks of :mod:`lorauq.questions`.
    """
    if not isinstance(answer, str):
        return answer
    index = int_or_raw(answer)
    if isinstance(index, int):
        return index
    letter = answer.strip().strip("()").strip().lower()
    n_choices = len(choices) if isinstance(choices, (list, tuple, np.ndarray)) else 0
    last = LETTERS[min(max(n_choices, 1), MAX_CHOICES) - 1].upper()
    if len(letter) != 1 or letter not in LETTERS:
        raise DataError(
            f"{file}: {where}: answer {answer!r} is neither a 0-based index nor a letter A-{last}"
        )
    if LETTERS.index(letter) >= n_choices:
        raise DataError(
            f"{file}: {where}: answer {answer!r} is not one of the row's letters A-{last} "
            f"({n_choices} choices)"
        )
    return LETTERS.index(letter)


def _user_record(
    item: dict[str, Any], *, file: Path, where: str, index: int, split: str | None
) -> Record:
    """A Question record from a row of the user's own table; optional columns get defaults."""
    raw_id = item.get("id")
    if raw_id is None or (isinstance(raw_id, float) and np.isnan(raw_id)):
        if split is None:
            raise DataError(f"{file}: {where}: id is missing")
        raw_id = f"{split}-{index}"
    elif is_int(raw_id):
        raw_id = str(raw_id)
    subject = item.get("subject") or file.stem
    return {
        "id": raw_id,
        "source": item.get("source") or file.stem,
        "subject": subject,
        "group": item.get("group") or subject,
        "question": item.get("question"),
        "choices": item.get("choices"),
        "answer": user_answer(item.get("answer"), item.get("choices"), file=file, where=where),
        "_origin": str(file),
        "_where": where,
    }


def _jsonl_records(file: Path, split: str) -> list[Record]:
    records = []
    for index, (where, item) in enumerate(json_objects(file)):
        missing = [key for key in ("question", "choices", "answer") if key not in item]
        if missing:
            raise DataError(
                f"{file}: {where}: missing key(s) {missing}; expected question, choices "
                "(a list), answer, and optionally id, subject, group"
            )
        records.append(_user_record(item, file=file, where=where, index=index, split=split))
    return records


def _user_csv_records(file: Path, split: str) -> list[Record]:
    rows = list(csv_rows(file))
    if not rows:
        raise DataError(f"{file}: empty CSV file")
    header = [name.strip() for name in rows[0][1]]
    choice_columns = [f"choice{n}" for n in range(MAX_CHOICES) if f"choice{n}" in header]
    expected = "question, choice0, choice1, ... (consecutive), answer; optional id, subject, group"
    if (
        "question" not in header
        or "answer" not in header
        or len(choice_columns) < MIN_CHOICES
        or choice_columns != [f"choice{n}" for n in range(len(choice_columns))]
    ):
        raise DataError(f"{file}: wrong CSV header {header}; expected columns {expected}")
    records = []
    for index, (line, fields) in enumerate(rows[1:]):
        where = f"row {index + 1} (line {line})"
        if len(fields) != len(header):
            spill = any("\n" in field for field in fields)
            hint = " (a field runs over several lines: an unclosed quote?)" if spill else ""
            raise DataError(
                f"{file}: {where}: {len(fields)} fields, header has {len(header)}{hint}"
            )
        item: dict[str, Any] = dict(zip(header, fields, strict=True))
        choices = [item[column] for column in choice_columns]
        while choices and not choices[-1].strip():  # rows with fewer choices leave cells empty
            choices.pop()
        item["choices"] = choices
        for optional in ("id", "subject", "group", "source"):
            if optional in item and not item[optional].strip():
                item[optional] = None
        records.append(_user_record(item, file=file, where=where, index=index, split=split))
    return records


def _parquet_records(file: Path, split: str) -> list[Record]:
    rows = parquet_rows(file)
    columns = list(rows[0]) if rows else []
    missing = [c for c in ("question", "choices", "answer") if rows and c not in columns]
    if missing:
        raise DataError(
            f"{file}: missing column(s) {missing}; has {columns}; expected question, choices "
            "(a list), answer, and optionally id, subject, group"
        )
    return [
        _user_record(item, file=file, where=f"row {index + 1}", index=index, split=split)
        for index, item in enumerate(rows)
    ]


def _filter(records: list[Record], group: str | None, subjects: Sequence[str] | None) -> list:
    if subjects is not None:
        wanted = {subjects} if isinstance(subjects, str) else set(subjects)
        records = [r for r in records if r["subject"] in wanted]
    if group is not None:
        records = [r for r in records if r["group"] == group]
    return records


def _load_user_file(
    source: str, split: str, path, group, subjects, reads: list[SourceRead]
) -> list[Record]:
    file = existing_file(path)
    if source == "jsonl":
        records = _jsonl_records(file, split)
    elif source == "csv":
        records = _user_csv_records(file, split)
    else:
        records = _parquet_records(file, split)
    reads.append(file_read(file, source=source, split=split, rows=len(records)))
    return _filter(records, group, subjects)


# --------------------------------------------------------------------------- CQA, ARC, OBQA


def _keyed_record(
    item: dict[str, Any], *, source: str, split: str, index: int, origin: str, where: str
) -> Record:
    """A record from either the hub schema or the original release's nested schema."""
    question = item.get("question")
    try:
        if isinstance(question, dict):  # original release: question.stem, question.choices[]
            text = question.get("stem")
            labels = [str(choice["label"]).strip() for choice in question["choices"]]
            choices = [choice["text"] for choice in question["choices"]]
        else:  # hub schema: question (question_stem in OBQA), choices {label: [], text: []}
            text = question if question is not None else item.get("question_stem")
            labels = [str(label).strip() for label in item["choices"]["label"]]
            choices = list(item["choices"]["text"])
    except (KeyError, TypeError) as exc:
        raise DataError(
            f"{origin}: {where}: choices must be {{label, text}} entries ({exc!r} missing or bad)"
        ) from exc
    key = item.get("answerKey")
    if key is None or str(key).strip() == "":
        answer = -1
    elif str(key).strip() in labels:
        answer = labels.index(str(key).strip())
    else:
        raise DataError(f"{origin}: {where}: answerKey {key!r} is not one of the labels {labels}")
    raw_id = item.get("id")
    return {
        "id": str(raw_id) if raw_id not in (None, "") else f"{split}-{index}",
        "source": source,
        "subject": source,
        "group": source,
        "question": text,
        "choices": choices,
        "answer": answer,
        "_origin": origin,
        "_where": where,
    }


def _load_keyed(source: str, split: str, path, revision, reads: list[SourceRead]) -> list[Record]:
    split = check_split(source, split)
    hub_id, config = _KEYED_HUB[source]
    if path is None:
        sources = hub_items(source, hub_id, config, split, revision, reads)
    else:
        other_arc = {"arc_easy": "challenge", "arc_challenge": "easy"}.get(source)
        subfolders = (config,) if config else ()
        sources = local_items(path, split, source, reads, subfolders=subfolders, exclude=other_arc)
    records = []
    for origin, located in sources:
        for index, (where, item) in enumerate(located):
            records.append(
                _keyed_record(
                    item, source=source, split=split, index=index, origin=origin, where=where
                )
            )
    return records


# --------------------------------------------------------------------------- MMLU


def _mmlu_record(
    subject: str,
    split: str,
    index: int,
    question: Any,
    choices: Any,
    answer: Any,
    origin: str,
    where: str,
) -> Record:
    """Ids are ``{subject}-{split}-{index}``: the same whichever copy (hub, csv) was read."""
    return {
        "id": f"{subject}-{split}-{index}",
        "source": "mmlu",
        "subject": subject,
        "group": mmlu_group_of(subject),
        "question": question,
        "choices": choices,
        "answer": answer,
        "_origin": origin,
        "_where": where,
    }


def _mmlu_file(root: Path, subject: str, split: str) -> Path:
    names = [split] + [alias for alias, canon in _MMLU_SPLIT_ALIASES.items() if canon == split]
    candidates = [root / folder / f"{subject}_{name}.csv" for folder in names for name in names]
    candidates += [root / f"{subject}_{name}.csv" for name in names]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DataError(
        f"{root}: no MMLU {split} file for subject {subject!r} "
        f"(looked for {[str(c.relative_to(root)) for c in candidates]})"
    )


def _mmlu_csv_records(file: Path, subject: str, split: str) -> list[Record]:
    """Read either MMLU CSV layout: the original headerless one with a letter answer, or the
    ``question,choice0..3,answer`` export with an integer answer."""
    rows = list(csv_rows(file))
    if not rows:
        raise DataError(f"{file}: empty CSV file")
    first = [field.strip() for field in rows[0][1]]
    has_header = first == MMLU_CSV_HEADER
    if not has_header and not (len(first) == 6 and first[5] in _MMLU_LETTERS):
        raise DataError(
            f"{file}: unrecognised MMLU CSV header {rows[0][1][:6]}; expected columns "
            f"{MMLU_CSV_HEADER} (integer answer 0-3), or no header and 6 fields "
            "question,A,B,C,D,<letter A-D> (the original release)"
        )
    records = []
    for index, (line, fields) in enumerate(rows[1:] if has_header else rows):
        where = f"row {index + 1} (line {line})"
        if len(fields) != 6:
            raise DataError(f"{file}: {where}: expected 6 fields, got {len(fields)}")
        raw = fields[5].strip()
        if has_header:
            answer: Any = int_or_raw(raw)
        elif raw in _MMLU_LETTERS:
            answer = _MMLU_LETTERS.index(raw)
        else:
            raise DataError(f"{file}: {where}: answer {raw!r} is not a letter A-D")
        records.append(
            _mmlu_record(subject, split, index, fields[0], fields[1:5], answer, str(file), where)
        )
    return records


def _load_mmlu(split: str, path, group, subjects, revision, reads: list[SourceRead]) -> list:
    split = check_split("mmlu", split)
    chosen = mmlu_subjects(group, subjects)
    records: list[Record] = []
    if path is not None and not Path(path).is_dir():
        raise DataError(f"{path}: not a folder (mmlu path= holds dev/, test/, val/ of CSVs)")
    for subject in chosen:
        if path is None:
            hub_split = _MMLU_SPLITS[split]
            rows, read = hub_rows(MMLU_HUB_ID, subject, hub_split, revision, source="mmlu")
            reads.append(read)
            origin = f"hub {MMLU_HUB_ID} ({subject}) {hub_split}"
            records.extend(
                _mmlu_record(
                    subject,
                    split,
                    index,
                    row.get("question"),
                    row.get("choices"),
                    row.get("answer"),
                    origin,
                    f"row {index + 1}",
                )
                for index, row in enumerate(rows)
            )
        else:
            file = _mmlu_file(Path(path), subject, split)
            subject_records = _mmlu_csv_records(file, subject, split)
            reads.append(file_read(file, source="mmlu", split=split, rows=len(subject_records)))
            records.extend(subject_records)
    return records


# --------------------------------------------------------------------------- dispatch


def _load_part(
    source: str, split: str, path, group, subjects, revision, reads: list[SourceRead]
) -> list[Record]:
    if source == "mmlu":
        return _load_mmlu(split, path, group, subjects, revision, reads)
    if source in _KEYED_HUB:
        return _load_keyed(source, split, path, revision, reads)
    if source in TWO_CHOICE_HUB:
        return load_two_choice(source, check_split(source, split), path, revision, reads)
    return _load_user_file(source, split, path, group, subjects, reads)
