"""Load multiple-choice sources into Question tables (see :mod:`lorauq.questions`).

Hub datasets, the original release files, the user's own csv/jsonl/parquet and the synthetic
world all become plain records first and then go through the one Question validator. The
hub is only one way in: every hub source also reads local files (``path=``), because the
default machine has no network.
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

import numpy as np
import pandas as pd

from lorauq.errors import DataError, did_you_mean
from lorauq.questions import Record, existing_file, is_int, parquet_rows, questions_frame
from lorauq.schema import LETTERS, MAX_CHOICES, MIN_CHOICES
from lorauq.subjects import mmlu_group_of, mmlu_subjects
from lorauq.synthetic import WorldSpec, synthetic_questions

HUB_SOURCES = ("commonsense_qa", "mmlu", "arc_easy", "arc_challenge", "openbookqa")
FILE_SOURCES = ("jsonl", "csv", "parquet")
SOURCES = (*HUB_SOURCES, "synthetic", *FILE_SOURCES)

#: Hub id and config of the sources whose rows carry ``choices: {label, text}`` and
#: ``answerKey`` (the hub schema) or ``question: {stem, choices: [...]}`` (original releases).
_KEYED_HUB = {
    "commonsense_qa": ("tau/commonsense_qa", None),
    "arc_easy": ("allenai/ai2_arc", "ARC-Easy"),
    "arc_challenge": ("allenai/ai2_arc", "ARC-Challenge"),
    "openbookqa": ("allenai/openbookqa", "main"),
}
#: Split names of those sources, with the aliases of the original releases (``dev``).
_KEYED_SPLITS = {
    "train": "train",
    "validation": "validation",
    "dev": "validation",
    "val": "validation",
    "test": "test",
}
#: Names a split's files may carry in a folder.
_SPLIT_FILE_NAMES = {
    "train": ("train",),
    "validation": ("validation", "dev", "val"),
    "test": ("test",),
}

MMLU_HUB_ID = "cais/mmlu"
#: MMLU split (as in the release folders) → the ``cais/mmlu`` split name.
_MMLU_SPLITS = {"dev": "dev", "val": "validation", "test": "test"}
_MMLU_SPLIT_ALIASES = {"validation": "val"}
MMLU_CSV_HEADER = ["question", "choice0", "choice1", "choice2", "choice3", "answer"]
#: MMLU's release files give the answer as an upper-case letter.
_MMLU_LETTERS = LETTERS.upper()[:4]


# --------------------------------------------------------------------------- public API


def load_questions(
    source: str,
    split: str,
    *,
    path: str | os.PathLike[str] | None = None,
    group: str | None = None,
    subjects: Sequence[str] | None = None,
    world: WorldSpec | None = None,
) -> pd.DataFrame:
    """Load one split of a source as a validated Question table (columns ``QUESTION_COLUMNS``).

    ``split`` may join parts with ``+`` (``"dev+val"``: the paper's MMLU training set).
    ``group``/``subjects`` select MMLU subjects (or filter the ``group``/``subject`` columns
    of the user's own files); other sources have no subjects to select. ``world`` is the
    synthetic world to generate (``source="synthetic"``; its default world when omitted).
    """
    if source not in SOURCES:
        raise DataError(
            f"unknown source {source!r}{did_you_mean(source, SOURCES, cutoff=0)} (valid: {SOURCES})"
        )
    if source == "synthetic":
        if path is not None:
            raise DataError("source 'synthetic' is generated, not read: it takes no path=")
        return synthetic_questions(split, spec=world)
    if (group is not None or subjects is not None) and source in _KEYED_HUB:
        raise DataError(f"source {source!r} has no subjects: group= and subjects= apply to mmlu")
    parts = [part.strip() for part in str(split).split("+")]
    if not all(parts):
        raise DataError(f"bad split {split!r}: empty split name")
    records: list[Record] = []
    for part in parts:
        records.extend(_load_part(source, part, path, group, subjects))
    frame = questions_frame(records)
    if frame.empty:
        raise DataError(
            f"{source} split {split!r}{f' from {path}' if path else ''}: no questions "
            f"(group={group!r}, subjects={subjects!r})"
        )
    return frame


# --------------------------------------------------------------------------- validation


# --------------------------------------------------------------------------- file reading


def _read_text(file: Path) -> str:
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


def _json_objects(file: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(location, object) of each JSON line; a ``.json`` file may also hold one JSON array."""
    text = _read_text(file)
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


def _csv_rows(file: Path) -> Iterator[tuple[int, list[str]]]:
    """(first line number, fields) of each CSV record, with a real parser (quoted newlines)."""
    reader = csv.reader(io.StringIO(_read_text(file), newline=""))
    line = 1
    try:
        for fields in reader:
            if fields:
                yield line, fields
            line = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"{file}: line {reader.line_num}: malformed CSV ({exc})") from exc


def _int_or_raw(text: str) -> int | str:
    """CSV answers arrive as text: an integer if it is one, else the text for the message."""
    stripped = text.strip()
    return int(stripped) if re.fullmatch(r"-?\d+", stripped) else text


# --------------------------------------------------------------------------- the user's files


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
        "answer": item.get("answer"),
        "_origin": str(file),
        "_where": where,
    }


def _jsonl_records(file: Path, split: str) -> list[Record]:
    records = []
    for index, (where, item) in enumerate(_json_objects(file)):
        missing = [key for key in ("question", "choices", "answer") if key not in item]
        if missing:
            raise DataError(
                f"{file}: {where}: missing key(s) {missing}; expected question, choices "
                "(a list), answer, and optionally id, subject, group"
            )
        records.append(_user_record(item, file=file, where=where, index=index, split=split))
    return records


def _user_csv_records(file: Path, split: str) -> list[Record]:
    rows = list(_csv_rows(file))
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
            raise DataError(f"{file}: {where}: {len(fields)} fields, header has {len(header)}")
        item: dict[str, Any] = dict(zip(header, fields, strict=True))
        choices = [item[column] for column in choice_columns]
        while choices and not choices[-1].strip():  # rows with fewer choices leave cells empty
            choices.pop()
        item["choices"] = choices
        item["answer"] = _int_or_raw(item["answer"])
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


def _load_user_file(source: str, split: str, path, group, subjects) -> list[Record]:
    file = existing_file(path)
    if source == "jsonl":
        records = _jsonl_records(file, split)
    elif source == "csv":
        records = _user_csv_records(file, split)
    else:
        records = _parquet_records(file, split)
    return _filter(records, group, subjects)


# --------------------------------------------------------------------------- the hub


def _hub_rows(hub_id: str, config: str | None, split: str) -> list[dict[str, Any]]:
    """Rows of one hub split; an unreachable or offline hub becomes a DataError pointing at path=.

    ``trust_remote_code`` is never passed: the sources used here are plain data repositories.
    """
    import datasets

    name = f"{hub_id}" + (f" (config {config})" if config else "")
    try:
        dataset = datasets.load_dataset(hub_id, config, split=split)
    except OSError as exc:  # ConnectionError, OfflineModeIsEnabled, DatasetNotFoundError, HTTP
        offline = os.environ.get("HF_HUB_OFFLINE", "0")
        raise DataError(
            f"cannot load {name} split {split!r} from the Hugging Face hub: the hub is "
            f"unreachable or offline (HF_HUB_OFFLINE={offline}) [{type(exc).__name__}: {exc}]; "
            "pass path= to local files instead"
        ) from exc
    except ValueError as exc:  # e.g. an unknown split
        raise DataError(f"cannot load {name} split {split!r} from the hub: {exc}") from exc
    return dataset.to_list()


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


def _split_files(folder: Path, split: str, source: str, config: str | None) -> list[Path]:
    """Files of one split in a folder: ``train.jsonl``, ``dev_rand_split.jsonl``,
    ``validation-00000-of-00001.parquet``, ``ARC-Easy-Dev.jsonl`` (also under ``<config>/``)."""
    folders = [folder] + ([folder / config] if config and (folder / config).is_dir() else [])
    folders += [f / "data" for f in folders if (f / "data").is_dir()]
    pattern = re.compile(rf"(^|[-_.])({'|'.join(_SPLIT_FILE_NAMES[split])})([-_.]|$)")
    other_arc = {"arc_easy": "challenge", "arc_challenge": "easy"}.get(source)
    found = [
        file
        for f in folders
        for file in sorted(f.iterdir())
        if file.is_file()
        and file.suffix in (".jsonl", ".json", ".parquet")
        and pattern.search(file.stem.lower())
        and not (other_arc and other_arc in file.name.lower())
    ]
    if not found:
        names = ", ".join(_SPLIT_FILE_NAMES[split])
        raise DataError(
            f"{folder}: no {split} file for {source} (looked in {[str(f) for f in folders]} for "
            f"*.jsonl/*.json/*.parquet named after {names}, e.g. {split}.jsonl, "
            f"{_SPLIT_FILE_NAMES[split][-1]}_rand_split.jsonl)"
        )
    return found


def _file_items(file: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    if file.suffix == ".parquet":
        for number, item in enumerate(parquet_rows(file), start=1):
            yield f"row {number}", item
    else:
        yield from _json_objects(file)


def _load_keyed(source: str, split: str, path) -> list[Record]:
    if split not in _KEYED_SPLITS:
        raise DataError(
            f"{source} has no split {split!r}{did_you_mean(split, _KEYED_SPLITS, cutoff=0)} "
            "(train, validation (= dev), test)"
        )
    split = _KEYED_SPLITS[split]
    hub_id, config = _KEYED_HUB[source]
    if path is None:
        origin = f"hub {hub_id}" + (f" ({config})" if config else "") + f" {split}"
        located = [(f"row {n}", item) for n, item in enumerate(_hub_rows(hub_id, config, split), 1)]
        sources = [(origin, located)]
    else:
        root = Path(path)
        if root.is_file():
            files = [root]
        elif root.is_dir():
            files = _split_files(root, split, source, config)
        else:
            raise DataError(f"{root}: no such file or folder")
        sources = [(str(file), list(_file_items(file))) for file in files]
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


def _mmlu_split(split: str) -> str:
    split = _MMLU_SPLIT_ALIASES.get(split, split)
    if split not in _MMLU_SPLITS:
        hint = " (the paper trains on 'dev+val')" if split == "train" else ""
        raise DataError(f"mmlu has no split {split!r}; use dev, val (= validation) or test{hint}")
    return split


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
    rows = list(_csv_rows(file))
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
            answer: Any = _int_or_raw(raw)
        elif raw in _MMLU_LETTERS:
            answer = _MMLU_LETTERS.index(raw)
        else:
            raise DataError(f"{file}: {where}: answer {raw!r} is not a letter A-D")
        records.append(
            _mmlu_record(subject, split, index, fields[0], fields[1:5], answer, str(file), where)
        )
    return records


def _load_mmlu(split: str, path, group, subjects) -> list[Record]:
    split = _mmlu_split(split)
    chosen = mmlu_subjects(group, subjects)
    records: list[Record] = []
    if path is not None and not Path(path).is_dir():
        raise DataError(f"{path}: not a folder (mmlu path= holds dev/, test/, val/ of CSVs)")
    for subject in chosen:
        if path is None:
            origin = f"hub {MMLU_HUB_ID} ({subject}) {_MMLU_SPLITS[split]}"
            rows = _hub_rows(MMLU_HUB_ID, subject, _MMLU_SPLITS[split])
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
            records.extend(_mmlu_csv_records(file, subject, split))
    return records


# --------------------------------------------------------------------------- dispatch


def _load_part(source: str, split: str, path, group, subjects) -> list[Record]:
    if source == "mmlu":
        return _load_mmlu(split, path, group, subjects)
    if source in _KEYED_HUB:
        return _load_keyed(source, split, path)
    return _load_user_file(source, split, path, group, subjects)
