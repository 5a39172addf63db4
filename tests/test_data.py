"""Loading sources into Question tables: every format, every validation error, the real data.

Small files are written to ``tmp_path`` in each source's real layout, so parsing is tested
without a hub. Real CommonsenseQA/MMLU rows, in their release formats, ship in
``tests/fixtures`` (every clone tests them); full copies, in the folder ``$LORAUQ_REALDATA``
names where it is set (``commonsenseqa/*_rand_split.jsonl``, ``mmlu/{dev,test}/*.csv``), pin
the sizes the paper reports.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lorauq.data import MMLU_CSV_HEADER, load_questions
from lorauq.errors import DataError
from lorauq.questions import read_prepared, save_questions, validate_questions
from lorauq.schema import QUESTION_COLUMNS
from lorauq.subjects import (
    MMLU_GROUPS,
    MMLU_SUBJECTS,
    SOCIAL_SCIENCES_PAPER,
    mmlu_group_of,
    mmlu_subjects,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REALDATA = Path(os.environ.get("LORAUQ_REALDATA") or "/nonexistent/LORAUQ_REALDATA-unset")
realdata = pytest.mark.skipif(
    not REALDATA.is_dir(),
    reason="full real data copies: set LORAUQ_REALDATA to a folder holding them",
)
#: (folder, CQA train rows, CQA validation rows, MMLU test rows per subject): the shipped
#: rows (always there) and, optionally, the full copies.
REAL_COPIES = [
    pytest.param(FIXTURES, 24, 24, 2, id="fixtures"),
    pytest.param(REALDATA, 9741, 1221, None, id="full", marks=[pytest.mark.realdata, realdata]),
]


# --------------------------------------------------------------------------- helpers


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return path


def cqa_original(qid: str, stem: str, answer: str | None = "B") -> dict:
    row = {
        "id": qid,
        "question": {
            "question_concept": "thing",
            "choices": [{"label": L, "text": f"{stem} {L.lower()}"} for L in "ABCDE"],
            "stem": stem,
        },
    }
    if answer is not None:
        row["answerKey"] = answer
    return row


def hub_keyed(qid: str, stem: str, labels: str, key: str, field: str = "question") -> dict:
    return {
        "id": qid,
        field: stem,
        "choices": {"label": list(labels), "text": [f"t{label}" for label in labels]},
        "answerKey": key,
    }


TRICKY = 'Say "hi", then\nwait, please'
MMLU_ROWS = [
    [TRICKY, "1, 2", '"q"', "x", "y", 2],
    ["Plain?", "0", "4", "None", "NA", 0],
]


def write_mmlu(root: Path, subject: str, split: str, rows: list[list], letters: bool) -> Path:
    """One MMLU CSV: the original release (no header, letter) or the export (header, int)."""
    folder = root / split
    if letters:
        body = [[*row[:5], "ABCD"[row[5]]] for row in rows]
        return write_csv(folder / f"{subject}_{split}.csv", body)
    return write_csv(folder / f"{subject}_{split}.csv", [MMLU_CSV_HEADER, *rows])


def assert_names(exc: pytest.ExceptionInfo, *parts: str) -> None:
    for part in parts:
        assert part in str(exc.value), f"{part!r} not in {exc.value}"


# --------------------------------------------------------------------------- subjects


def test_subject_lists_match_lm_eval_and_the_paper():
    assert len(MMLU_SUBJECTS) == 57
    sizes = {group: len(MMLU_GROUPS[group]) for group in MMLU_GROUPS}
    assert sizes == {
        "stem": 19,
        "social_sciences": 12,
        "humanities": 13,
        "other": 13,
        "social_sciences_paper": 11,
    }
    assert set(SOCIAL_SCIENCES_PAPER) == set(MMLU_GROUPS["social_sciences"]) - {"human_sexuality"}
    assert mmlu_subjects() == list(MMLU_SUBJECTS)
    assert mmlu_group_of("machine_learning") == "stem"
    assert mmlu_group_of("human_sexuality") == "social_sciences"
    assert mmlu_subjects("stem", ["anatomy", "astronomy", "anatomy"]) == [
        "anatomy",
        "astronomy",
    ]


def test_unknown_group_or_subject_names_the_closest():
    with pytest.raises(DataError) as exc:
        mmlu_subjects("stme")
    assert_names(exc, "'stme'", "'stem'")
    with pytest.raises(DataError) as exc:
        mmlu_group_of("anatomyy")
    assert_names(exc, "'anatomyy'", "'anatomy'")
    with pytest.raises(DataError) as exc:
        mmlu_subjects("stem", ["sociology"])
    assert_names(exc, "sociology", "stem")


# --------------------------------------------------------------------------- CommonsenseQA


def test_cqa_original_release_folder(tmp_path):
    write_jsonl(
        tmp_path / "train_rand_split.jsonl",
        [cqa_original("t1", "Q1"), cqa_original("t2", "Q2", "E")],
    )
    write_jsonl(tmp_path / "dev_rand_split.jsonl", [cqa_original("d1", "D1", "A")])
    write_jsonl(tmp_path / "test_rand_split_no_answers.jsonl", [cqa_original("x1", "X", None)])
    train = load_questions("commonsense_qa", "train", path=tmp_path)
    assert list(train.columns) == QUESTION_COLUMNS
    assert train["id"].tolist() == ["t1", "t2"]
    assert train["answer"].tolist() == [1, 4]
    assert train["answer"].dtype == "int64"
    assert train["choices"].iloc[0] == ["Q1 a", "Q1 b", "Q1 c", "Q1 d", "Q1 e"]
    assert isinstance(train["choices"].iloc[0], list)
    assert set(train[["source", "subject", "group"]].to_numpy().ravel()) == {"commonsense_qa"}
    for alias in ("validation", "dev"):
        dev = load_questions("commonsense_qa", alias, path=tmp_path)
        assert dev["id"].tolist() == ["d1"] and dev["answer"].tolist() == [0]
    assert load_questions("commonsense_qa", "test", path=tmp_path)["answer"].tolist() == [-1]


def test_cqa_hub_schema_jsonl_and_parquet_files(tmp_path):
    rows = [hub_keyed("a", "Where?", "ABCDE", "C"), hub_keyed("b", "Why?", "ABCDE", "")]
    for row in rows:
        row["question_concept"] = "c"
    jsonl = write_jsonl(tmp_path / "validation.jsonl", rows)
    parquet = tmp_path / "pq" / "validation-00000-of-00001.parquet"
    parquet.parent.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    from_jsonl = load_questions("commonsense_qa", "validation", path=jsonl)
    from_folder = load_questions("commonsense_qa", "dev", path=parquet.parent)
    pd.testing.assert_frame_equal(from_jsonl, from_folder)
    assert from_jsonl["answer"].tolist() == [2, -1]
    assert from_jsonl["choices"].iloc[1] == ["tA", "tB", "tC", "tD", "tE"]


def test_hub_rows_are_converted_and_split_names_mapped(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(hub_id, config=None, **kwargs):
        calls.append((hub_id, config, kwargs))
        if hub_id == "cais/mmlu":
            rows = [{"question": "2+2?", "subject": config, "choices": list("1234"), "answer": 3}]
        else:
            rows = [hub_keyed("h1", "Hub?", "ABCDE", "D") | {"question_concept": "c"}]
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    cqa = load_questions("commonsense_qa", "dev")
    assert calls[-1] == ("tau/commonsense_qa", None, {"split": "validation", "revision": None})
    assert cqa["id"].tolist() == ["h1"] and cqa["answer"].tolist() == [3]
    mmlu = load_questions("mmlu", "val", subjects=["anatomy", "virology"])
    assert [c[:2] for c in calls[-2:]] == [("cais/mmlu", "anatomy"), ("cais/mmlu", "virology")]
    assert calls[-1][2] == {"split": "validation", "revision": None}
    assert mmlu["id"].tolist() == ["anatomy-val-0", "virology-val-0"]
    assert mmlu["group"].tolist() == ["stem", "other"]
    assert all("trust_remote_code" not in kwargs for _, _, kwargs in calls)


def test_unreachable_hub_is_a_data_error_suggesting_path(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'allenai/ai2_arc' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError) as exc:
        load_questions("arc_easy", "train")
    assert_names(exc, "allenai/ai2_arc", "ARC-Easy", "HF_HUB_OFFLINE", "path=", "offline")


# --------------------------------------------------------------------------- MMLU


@pytest.mark.parametrize("letters", [True, False], ids=["original-headerless", "header-int"])
def test_mmlu_csv_formats(tmp_path, letters):
    write_mmlu(tmp_path, "anatomy", "test", MMLU_ROWS, letters)
    write_mmlu(tmp_path, "sociology", "test", MMLU_ROWS[1:], letters)
    frame = load_questions("mmlu", "test", path=tmp_path, subjects=["sociology", "anatomy"])
    assert frame["id"].tolist() == ["sociology-test-0", "anatomy-test-0", "anatomy-test-1"]
    assert frame["question"].iloc[1] == TRICKY
    assert frame["choices"].iloc[1] == ["1, 2", '"q"', "x", "y"]
    assert frame["choices"].iloc[0] == ["0", "4", "None", "NA"]  # kept as text, never NaN
    assert frame["answer"].tolist() == [0, 2, 0]
    assert frame["group"].tolist() == ["social_sciences", "stem", "stem"]
    assert set(frame["source"]) == {"mmlu"}


def test_mmlu_both_local_formats_give_equal_tables(tmp_path):
    for letters, root in ((True, tmp_path / "orig"), (False, tmp_path / "export")):
        write_mmlu(root, "anatomy", "test", MMLU_ROWS, letters)
    pd.testing.assert_frame_equal(
        load_questions("mmlu", "test", path=tmp_path / "orig", subjects=["anatomy"]),
        load_questions("mmlu", "test", path=tmp_path / "export", subjects=["anatomy"]),
    )


def test_mmlu_val_alias_and_joined_splits(tmp_path):
    write_mmlu(tmp_path, "anatomy", "dev", MMLU_ROWS[:1], letters=True)
    write_mmlu(tmp_path, "anatomy", "val", MMLU_ROWS[1:], letters=False)
    frame = load_questions("mmlu", "dev+validation", path=tmp_path, subjects=["anatomy"])
    assert frame["id"].tolist() == ["anatomy-dev-0", "anatomy-val-0"]
    with pytest.raises(DataError) as exc:
        load_questions("mmlu", "train", path=tmp_path, subjects=["anatomy"])
    assert_names(exc, "'train'", "dev+val")


def test_mmlu_group_selection_and_missing_file(tmp_path):
    for subject in MMLU_GROUPS["stem"]:
        write_mmlu(tmp_path, subject, "test", MMLU_ROWS[1:], letters=False)
    frame = load_questions("mmlu", "test", path=tmp_path, group="stem")
    assert frame["subject"].tolist() == list(MMLU_GROUPS["stem"])
    with pytest.raises(DataError) as exc:
        load_questions("mmlu", "test", path=tmp_path, group="social_sciences_paper")
    assert_names(exc, str(tmp_path), "econometrics", "test/econometrics_test.csv")
    with pytest.raises(DataError) as exc:
        load_questions("mmlu", "test", path=tmp_path, group="stme")
    assert_names(exc, "'stme'", "'stem'")


def test_mmlu_wrong_header_lists_expected_columns(tmp_path):
    write_csv(tmp_path / "test" / "anatomy_test.csv", [["q", "a", "b", "c", "d", "label"]])
    with pytest.raises(DataError) as exc:
        load_questions("mmlu", "test", path=tmp_path, subjects=["anatomy"])
    assert_names(exc, "anatomy_test.csv", str(MMLU_CSV_HEADER))


def test_mmlu_bad_rows_name_file_and_row(tmp_path):
    file = write_mmlu(
        tmp_path, "anatomy", "test", [*MMLU_ROWS, ["Q?", "a", "b", "c", "d", 7]], False
    )
    with pytest.raises(DataError) as exc:
        load_questions("mmlu", "test", path=tmp_path, subjects=["anatomy"])
    assert_names(exc, str(file), "row 3", "answer 7 outside -1..3")
    write_csv(file, [["Q?", "a", "b", "c", "d", "A"], ["Q2?", "a", "b", "c", "d", "F"]])
    with pytest.raises(DataError) as exc:
        load_questions("mmlu", "test", path=tmp_path, subjects=["anatomy"])
    assert_names(exc, str(file), "row 2", "'F'")
    write_csv(file, [["Q?", "a", "b", "c", "d", "A"], ["Q2?", "a", "b", "B"]])
    with pytest.raises(DataError) as exc:
        load_questions("mmlu", "test", path=tmp_path, subjects=["anatomy"])
    assert_names(exc, str(file), "row 2", "6 fields")


# --------------------------------------------------------------------------- ARC, OpenBookQA


def test_arc_hub_schema_numeric_and_letter_keys_and_choice_counts(tmp_path):
    rows = [
        hub_keyed("Mercury_1", "Which?", "1234", "3"),
        hub_keyed("Mercury_2", "Three?", "ABC", "A"),
        hub_keyed("Mercury_3", "Five?", "ABCDE", "E"),
    ]
    write_jsonl(tmp_path / "ARC-Challenge" / "validation.jsonl", rows)
    write_jsonl(tmp_path / "ARC-Easy" / "validation.jsonl", rows[:1])
    frame = load_questions("arc_challenge", "validation", path=tmp_path)
    assert frame["answer"].tolist() == [2, 0, 4]
    assert frame["choices"].map(len).tolist() == [4, 3, 5]
    assert frame["choices"].iloc[0] == ["t1", "t2", "t3", "t4"]
    assert set(frame["source"]) == {"arc_challenge"} == set(frame["group"])
    assert len(load_questions("arc_easy", "dev", path=tmp_path / "ARC-Easy")) == 1


def test_arc_original_release_names(tmp_path):
    write_jsonl(tmp_path / "ARC-Easy-Dev.jsonl", [cqa_original("e1", "Easy?", "C")])
    write_jsonl(tmp_path / "ARC-Challenge-Dev.jsonl", [cqa_original("c1", "Hard?", "D")])
    assert load_questions("arc_easy", "validation", path=tmp_path)["id"].tolist() == ["e1"]
    assert load_questions("arc_challenge", "validation", path=tmp_path)["id"].tolist() == ["c1"]


def test_openbookqa_question_stem(tmp_path):
    rows = [hub_keyed("7-980", "The sun is", "ABCD", "B", field="question_stem")]
    frame = load_questions("openbookqa", "test", path=write_jsonl(tmp_path / "test.jsonl", rows))
    assert frame[["id", "question", "answer"]].to_dict("records") == [
        {"id": "7-980", "question": "The sun is", "answer": 1}
    ]
    assert set(frame["subject"]) == {"openbookqa"}


def test_keyed_answer_not_in_labels_and_missing_split_file(tmp_path):
    file = write_jsonl(
        tmp_path / "train.jsonl",
        [hub_keyed("a", "Q?", "ABCD", "A"), hub_keyed("b", "Q?", "ABCD", "Z")],
    )
    with pytest.raises(DataError) as exc:
        load_questions("openbookqa", "train", path=tmp_path)
    assert_names(exc, str(file), "line 2", "'Z'")
    with pytest.raises(DataError) as exc:
        load_questions("openbookqa", "test", path=tmp_path)
    assert_names(exc, str(tmp_path), "test")
    with pytest.raises(DataError) as exc:
        load_questions("openbookqa", "tain", path=tmp_path)
    assert_names(exc, "'tain'", "'train'")


# --------------------------------------------------------------------------- the user's files


OWN_ROWS = [
    {"id": "q1", "subject": "geo", "question": "Capital?", "choices": ["A", "B", "C"], "answer": 1},
    {"id": "q2", "subject": "bio", "question": "Cells?", "choices": ["x", "y"], "answer": -1},
]


def test_own_jsonl_csv_parquet_agree(tmp_path):
    jsonl = write_jsonl(tmp_path / "mine.jsonl", OWN_ROWS)
    csv_file = write_csv(
        tmp_path / "mine.csv",
        [
            ["id", "subject", "question", "choice0", "choice1", "choice2", "answer"],
            ["q1", "geo", "Capital?", "A", "B", "C", "1"],
            ["q2", "bio", "Cells?", "x", "y", "", "-1"],
        ],
    )
    parquet = tmp_path / "mine.parquet"
    pq.write_table(pa.Table.from_pylist(OWN_ROWS), parquet)
    frames = [load_questions(fmt, "eval", path=p) for fmt, p in
              (("jsonl", jsonl), ("csv", csv_file), ("parquet", parquet))]  # fmt: skip
    for frame in frames[1:]:
        pd.testing.assert_frame_equal(frames[0], frame)
    frame = frames[0]
    assert frame["source"].tolist() == ["mine", "mine"]
    assert frame["group"].tolist() == ["geo", "bio"]  # group defaults to subject
    assert frame["choices"].tolist() == [["A", "B", "C"], ["x", "y"]]
    geo = load_questions("jsonl", "eval", path=jsonl, subjects=["geo"])
    assert geo["id"].tolist() == ["q1"]
    with pytest.raises(DataError) as exc:
        load_questions("jsonl", "eval", path=jsonl, subjects=["chem"])
    assert_names(exc, "no questions", "chem")


def test_letter_answers_become_indices(tmp_path):
    """A user file may give the gold answer as the letter the prompt shows: upper or lower
    case, bare or in parentheses, in csv, jsonl and parquet alike; an index still works."""
    csv_file = write_csv(
        tmp_path / "letters.csv",
        [
            ["question", "choice0", "choice1", "choice2", "choice3", "answer"],
            ["Capital?", "A", "B", "C", "D", "B"],
            ["Cells?", "x", "y", "z", "w", "d"],
            ["Sky?", "blue", "red", "", "", "(a)"],
            ["Sea?", "wet", "dry", "", "", "1"],
        ],
    )
    rows = [
        {"question": "Capital?", "choices": ["A", "B", "C", "D"], "answer": "B"},
        {"question": "Cells?", "choices": ["x", "y", "z", "w"], "answer": "d"},
        {"question": "Sky?", "choices": ["blue", "red"], "answer": "(a)"},
        {"question": "Sea?", "choices": ["wet", "dry"], "answer": 1},
    ]
    jsonl = write_jsonl(tmp_path / "letters.jsonl", rows)
    parquet = tmp_path / "letters.parquet"
    pq.write_table(pa.Table.from_pylist([{**r, "answer": str(r["answer"])} for r in rows]), parquet)
    for fmt, path in (("csv", csv_file), ("jsonl", jsonl), ("parquet", parquet)):
        frame = load_questions(fmt, "train", path=path)
        assert frame["answer"].tolist() == [1, 3, 0, 1], fmt
        assert frame["answer"].dtype == np.int64


def test_own_files_without_id_or_subject(tmp_path):
    rows = [{k: v for k, v in row.items() if k not in ("id", "subject")} for row in OWN_ROWS]
    frame = load_questions("jsonl", "heldout", path=write_jsonl(tmp_path / "quiz.jsonl", rows))
    assert frame["id"].tolist() == ["heldout-0", "heldout-1"]
    assert set(frame["subject"]) == {"quiz"} == set(frame["group"])


def test_synthetic_is_generated_from_the_given_world():
    from lorauq.tiny.world import WorldSpec, domain_questions

    world = WorldSpec(seed=3, unseen_words=7)
    frame = load_questions("synthetic", "unseen", world=world)
    pd.testing.assert_frame_equal(frame, domain_questions("unseen", world))
    assert len(frame) == 7
    with pytest.raises(DataError, match="takes no path="):
        load_questions("synthetic", "train", path="x")


# --------------------------------------------------------------------------- validation errors


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"id": "", "question": "Q?", "choices": ["a", "b"], "answer": 0}, "id must be"),
        ({"id": "z", "question": "  ", "choices": ["a", "b"], "answer": 0}, "question must be"),
        ({"id": "z", "question": "Q?", "choices": ["a"], "answer": 0}, "needs 2-10 choices, got 1"),
        ({"id": "z", "question": "Q?", "choices": list("abcdefghijk"), "answer": 0}, "got 11"),
        ({"id": "z", "question": "Q?", "choices": ["a", ""], "answer": 0}, "choice 1 must be"),
        ({"id": "z", "question": "Q?", "choices": ["a", 3], "answer": 0}, "choice 1 must be"),
        ({"id": "z", "question": "Q?", "choices": "ab", "answer": 0}, "list of strings"),
        ({"id": "z", "question": "Q?", "choices": ["a", "b"], "answer": 2}, "outside -1..1"),
        ({"id": "z", "question": "Q?", "choices": ["a", "b"], "answer": -2}, "outside -1..1"),
        ({"id": "z", "question": "Q?", "choices": ["a", "b"], "answer": 1.5}, "must be an integer"),
        (
            {"id": "z", "question": "Q?", "choices": ["a", "b"], "answer": True},
            "must be an integer",
        ),
    ],
)
def test_bad_row_names_file_line_and_reason(tmp_path, row, reason):
    good = {"id": "ok", "question": "Fine?", "choices": ["a", "b"], "answer": 0}
    file = write_jsonl(tmp_path / "bad.jsonl", [good, row])
    with pytest.raises(DataError) as exc:
        load_questions("jsonl", "x", path=file)
    assert_names(exc, str(file), "line 2", reason)


def test_duplicate_id_names_both_rows(tmp_path):
    rows = [OWN_ROWS[0], OWN_ROWS[1], OWN_ROWS[0]]
    file = write_jsonl(tmp_path / "dup.jsonl", rows)
    with pytest.raises(DataError) as exc:
        load_questions("jsonl", "x", path=file)
    assert_names(exc, str(file), "line 3", "duplicate id 'q1'", "line 1")


def test_csv_errors_name_file_and_row(tmp_path):
    file = write_csv(
        tmp_path / "own.csv",
        [
            ["question", "choice0", "choice1", "answer"],
            ["Q?", "a", "b", "0"],
            ["Q?", "a", "b", "one"],
        ],
    )
    with pytest.raises(DataError) as exc:
        load_questions("csv", "x", path=file)
    assert_names(exc, str(file), "row 2", "'one'")
    write_csv(file, [["question", "choice0", "choice2", "answer"], ["Q?", "a", "b", "0"]])
    with pytest.raises(DataError) as exc:
        load_questions("csv", "x", path=file)
    assert_names(exc, str(file), "wrong CSV header", "question, choice0, choice1")
    write_csv(file, [["question", "choice0", "choice1", "answer"], ["Q?", "a", "", "b", "0"]])
    with pytest.raises(DataError) as exc:
        load_questions("csv", "x", path=file)
    assert_names(exc, str(file), "row 1", "5 fields")


def test_undecodable_bytes_name_the_file(tmp_path):
    for name, source in (("latin.csv", "csv"), ("latin.jsonl", "jsonl")):
        file = tmp_path / name
        file.write_bytes(b"question,choice0,choice1,answer\nCaf\xe9?,a,b,0\n")
        with pytest.raises(DataError) as exc:
            load_questions(source, "x", path=file)
        assert_names(exc, str(file), "UTF-8")
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "anatomy_test.csv").write_bytes(b"Q\xff,a,b,c,d,A\n")
    with pytest.raises(DataError) as exc:
        load_questions("mmlu", "test", path=tmp_path, subjects=["anatomy"])
    assert_names(exc, "anatomy_test.csv", "UTF-8")


def test_malformed_json_line_names_file_and_line(tmp_path):
    file = tmp_path / "broken.jsonl"
    file.write_text(json.dumps(OWN_ROWS[0]) + "\n\n{not json}\n", encoding="utf-8")
    with pytest.raises(DataError) as exc:
        load_questions("jsonl", "x", path=file)
    assert_names(exc, str(file), "line 3", "malformed JSON")
    file.write_text('{"question": "Q?", "choices": ["a", "b"]}\n', encoding="utf-8")
    with pytest.raises(DataError) as exc:
        load_questions("jsonl", "x", path=file)
    assert_names(exc, str(file), "line 1", "'answer'")


def test_bad_arguments(tmp_path):
    with pytest.raises(DataError) as exc:
        load_questions("commonsenseqa", "train")
    assert_names(exc, "'commonsenseqa'", "'commonsense_qa'")
    with pytest.raises(DataError) as exc:
        load_questions("commonsense_qa", "train", group="stem")
    assert_names(exc, "group=")
    with pytest.raises(DataError) as exc:
        load_questions("jsonl", "x")
    assert_names(exc, "path=")
    with pytest.raises(DataError) as exc:
        load_questions("parquet", "x", path=tmp_path / "nope.parquet")
    assert_names(exc, "nope.parquet", "no such file")
    parquet = tmp_path / "cols.parquet"
    pq.write_table(pa.Table.from_pylist([{"question": "Q?", "answer": 0}]), parquet)
    with pytest.raises(DataError) as exc:
        load_questions("parquet", "x", path=parquet)
    assert_names(exc, str(parquet), "'choices'")
    empty = write_jsonl(tmp_path / "empty.jsonl", [])
    with pytest.raises(DataError) as exc:
        load_questions("jsonl", "x", path=empty)
    assert_names(exc, "no questions")


# --------------------------------------------------------------------------- prepared tables


def test_prepared_round_trip(tmp_path):
    frame = load_questions("jsonl", "eval", path=write_jsonl(tmp_path / "mine.jsonl", OWN_ROWS))
    out = save_questions(frame, tmp_path / "prepared" / "eval.parquet")
    assert pq.read_schema(out).field("choices").type == pa.list_(pa.string())
    assert [p.name for p in out.parent.iterdir()] == ["eval.parquet"]  # no temp file left
    pd.testing.assert_frame_equal(read_prepared(out), frame)
    pd.testing.assert_frame_equal(validate_questions(frame), frame)


def test_prepared_tables_are_checked(tmp_path):
    frame = pd.DataFrame([{**OWN_ROWS[0], "source": "s", "group": "g"}])[QUESTION_COLUMNS]
    bad = frame.assign(answer=[5])
    with pytest.raises(DataError) as exc:
        save_questions(bad, tmp_path / "bad.parquet")
    assert_names(exc, "bad.parquet", "row 1", "answer 5")
    assert not (tmp_path / "bad.parquet").exists()
    edited = tmp_path / "edited.parquet"
    pq.write_table(pa.Table.from_pandas(bad, preserve_index=False), edited)
    with pytest.raises(DataError) as exc:
        read_prepared(edited)
    assert_names(exc, str(edited), "row 1", "answer 5")
    with pytest.raises(DataError) as exc:
        validate_questions(frame.drop(columns=["group"]), "mine")
    assert_names(exc, "mine", "'group'")


# --------------------------------------------------------------------------- real data


@pytest.mark.parametrize(("root", "train_rows", "validation_rows", "per_subject"), REAL_COPIES)
def test_real_commonsense_qa(root, train_rows, validation_rows, per_subject):
    for split, rows in (("train", train_rows), ("validation", validation_rows)):
        frame = load_questions("commonsense_qa", split, path=root / "commonsenseqa")
        assert len(frame) == rows
        assert (frame["choices"].map(len) == 5).all()
        assert frame["answer"].between(0, 4).all()
        assert frame["id"].is_unique
    # The first dev row, read by hand from dev_rand_split.jsonl (answerKey "A").
    first = frame.iloc[0]
    assert first["id"] == "1afa02df02c908a558b4036e80242fac"
    assert first["question"].startswith("A revolving door is convenient for two direction")
    assert list(first["choices"]) == ["bank", "library", "department store", "mall", "new york"]
    assert first["answer"] == 0


def test_fixture_rows_equal_the_hub_schema_rows(tmp_path):
    """The hub's flat schema (id, question, question_concept, choices{label, text}, answerKey)
    of the shipped release rows, as jsonl and parquet, loads to the same table."""
    folder = FIXTURES / "commonsenseqa"
    release = load_questions("commonsense_qa", "validation", path=folder)
    hub = []
    for line in (folder / "dev_rand_split.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        choices = row["question"]["choices"]
        hub.append({
            "id": row["id"],
            "question": row["question"]["stem"],
            "question_concept": row["question"]["question_concept"],
            "choices": {"label": [c["label"] for c in choices], "text": [c["text"] for c in choices]},
            "answerKey": row["answerKey"],
        })  # fmt: skip
    write_jsonl(tmp_path / "jsonl" / "validation.jsonl", hub)
    (tmp_path / "parquet").mkdir()
    pq.write_table(pa.Table.from_pylist(hub), tmp_path / "parquet" / "validation.parquet")
    for layout in ("jsonl", "parquet"):
        loaded = load_questions("commonsense_qa", "validation", path=tmp_path / layout)
        columns = ["id", "question", "choices", "answer"]
        pd.testing.assert_frame_equal(loaded[columns], release[columns])


@pytest.mark.parametrize(("root", "train_rows", "validation_rows", "per_subject"), REAL_COPIES)
@pytest.mark.parametrize(
    ("group", "full_rows", "n_subjects"),
    [("stem", 3153, 19), ("social_sciences_paper", 2946, 11)],
)
def test_real_mmlu_test_groups(
    root, train_rows, validation_rows, per_subject, group, full_rows, n_subjects
):
    frame = load_questions("mmlu", "test", path=root / "mmlu", group=group)
    assert len(frame) == (full_rows if per_subject is None else per_subject * n_subjects)
    assert frame["subject"].nunique() == n_subjects
    assert (frame["choices"].map(len) == 4).all()
    assert frame["answer"].between(0, 3).all()
    assert frame["id"].is_unique


@pytest.mark.realdata
@realdata
@pytest.mark.parametrize(
    ("group", "rows", "n_subjects"), [("social_sciences", 3077, 12), (None, 14042, 57)]
)
def test_real_mmlu_full_groups(group, rows, n_subjects):
    frame = load_questions("mmlu", "test", path=REALDATA / "mmlu", group=group)
    assert len(frame) == rows
    assert frame["subject"].nunique() == n_subjects


@pytest.mark.parametrize(("root", "train_rows", "validation_rows", "per_subject"), REAL_COPIES)
def test_real_mmlu_prepared_tables_of_both_local_formats_equal(
    tmp_path, root, train_rows, validation_rows, per_subject
):
    """The header+int export, rewritten as the original headerless-letter release."""
    splits = [split for split in ("dev", "test") if (root / "mmlu" / split).is_dir()]
    subjects = sorted(path.name.split("_test")[0] for path in (root / "mmlu" / "test").glob("*"))
    for split in splits:
        for source in sorted((root / "mmlu" / split).glob("*.csv")):
            with source.open(newline="", encoding="utf-8") as handle:
                rows = list(csv.reader(handle))
            assert rows[0] == MMLU_CSV_HEADER
            body = [[*row[:5], "ABCD"[int(row[5])]] for row in rows[1:]]
            write_csv(tmp_path / "orig" / split / source.name, body)
    for split in splits:
        shared = load_questions("mmlu", split, path=root / "mmlu", subjects=subjects)
        original = load_questions("mmlu", split, path=tmp_path / "orig", subjects=subjects)
        pd.testing.assert_frame_equal(shared, original)
        a = read_prepared(save_questions(shared, tmp_path / "prep" / f"shared-{split}.parquet"))
        b = read_prepared(save_questions(original, tmp_path / "prep" / f"orig-{split}.parquet"))
        pd.testing.assert_frame_equal(a, b)
        pd.testing.assert_frame_equal(a, shared)
