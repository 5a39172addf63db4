"""The Bayesian-LoRA protocol's tasks as sources: WinoGrande S/M, ARC-C/E, OpenBookQA, BoolQ,
and the out-of-distribution MMLU subjects college chemistry and physics.

Real rows ship in ``tests/fixtures`` (their origins: ``tests/fixtures/README.md``); where no
public copy of a format was at hand (WinoGrande's validation and S/M training files, BoolQ
in ``google/boolq``'s schema), the rows below are MADE UP, in the real schema, and say so.
Full copies, in the folder ``$LORAUQ_REALDATA`` names, pin the protocol's split sizes
(``arc_easy/``, ``arc_challenge/``, ``openbookqa/``, ``winogrande/``, ``boolq/``,
``mmlu/``); each check skips when its copy is absent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lorauq.data import load_questions, load_source
from lorauq.errors import DataError
from lorauq.twochoice import BOOLQ_CHOICES, BOOLQ_QUESTION

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REALDATA = Path(os.environ.get("LORAUQ_REALDATA") or "/nonexistent/LORAUQ_REALDATA-unset")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


# --------------------------------------------------------------------------- WinoGrande


def test_winogrande_real_release_rows():
    """WinoGrande 1.1's release format (``train_xs.jsonl``), real rows: the sentence with its
    blank is the question, option1/option2 the choices, answer "1"/"2" → 0/1."""
    frame = load_questions("winogrande_xs", "train", path=FIXTURES / "winogrande")
    assert frame["id"].tolist() == ["train-0", "train-1", "train-2", "train-3"]
    assert frame["answer"].tolist() == [0, 1, 1, 0]
    assert frame["choices"].tolist() == [["home", "house"]] * 2 + [["Kyle", "Logan"]] * 2
    assert frame["question"].iloc[0] == (
        "He never comes to my home, but I always go to his house because the _ is smaller."
    )
    assert set(frame["source"]) == {"winogrande_xs"} == set(frame["group"])


#: MADE UP rows in WinoGrande's schema (release: with qID; hub: without).
MADE_UP_WINOGRANDE = {
    "train_s": [("The cup fell off the shelf because the _ was tilted.", "cup", "shelf", "2")],
    "train_m": [
        ("The cup fell off the shelf because the _ was tilted.", "cup", "shelf", "2"),
        ("Ann lent Bea a pen because _ had none.", "Ann", "Bea", "2"),
    ],
    "dev": [
        ("The ice melted in the sun because the _ was hot.", "ice", "sun", "2"),
        ("Tom beat Sam at chess since _ had practised.", "Tom", "Sam", "1"),
    ],
    "test": [("The box sank and the ball floated as the _ was heavy.", "box", "ball", "")],
}


def made_up_winogrande(tmp_path: Path) -> tuple[Path, Path]:
    """The same MADE UP rows as the release folder and as the hub's parquet layout."""
    release, hub = tmp_path / "release" / "winogrande_1.1", tmp_path / "hub"
    hub_names = {"train_s": "train", "train_m": "train", "dev": "validation", "test": "test"}
    for name, rows in MADE_UP_WINOGRANDE.items():
        dicts = [
            dict(zip(("sentence", "option1", "option2", "answer"), r, strict=True)) for r in rows
        ]
        write_jsonl(
            release / f"{name}.jsonl",
            [{"qID": f"MADEUP{n}-{name}", **row} for n, row in enumerate(dicts)],
        )
        configs = {"train_s": ["winogrande_s"], "train_m": ["winogrande_m"]}.get(
            name, ["winogrande_s", "winogrande_m"]
        )
        for config in configs:
            write_parquet(hub / config / f"{hub_names[name]}-00000-of-00001.parquet", dicts)
    return release.parent, hub


@pytest.mark.parametrize("source", ["winogrande_s", "winogrande_m"])
def test_winogrande_sizes_and_layouts(tmp_path, source):
    release, hub = made_up_winogrande(tmp_path)
    size = source.removeprefix("winogrande_")
    for split in ("train", "validation", "test"):
        from_release = load_source(source, split, path=release)
        from_hub = load_questions(source, split, path=hub)
        pd.testing.assert_frame_equal(from_release.frame, from_hub)
        (read,) = from_release.reads
        expected = {"train": f"train_{size}.jsonl", "validation": "dev.jsonl", "test": "test.jsonl"}
        assert Path(read.path).name == expected[split]
    train = load_questions(source, "train", path=release)
    assert len(train) == len(MADE_UP_WINOGRANDE[f"train_{size}"])
    dev = load_questions(source, "dev", path=release)
    assert dev["answer"].tolist() == [1, 0]
    assert dev["choices"].tolist() == [["ice", "sun"], ["Tom", "Sam"]]
    assert load_questions(source, "test", path=release)["answer"].tolist() == [-1]


def test_winogrande_bad_answer_names_file_and_line(tmp_path):
    file = write_jsonl(
        tmp_path / "dev.jsonl",
        [{"qID": "MADEUP-1", "sentence": "A _ b.", "option1": "x", "option2": "y", "answer": "3"}],
    )
    with pytest.raises(DataError) as exc:
        load_questions("winogrande_m", "validation", path=file)
    assert f"{file}: line 1: answer '3' is not '1', '2' or empty" in str(exc.value)
    write_jsonl(file, [{"qID": "MADEUP-1", "sentence": "A _ b.", "option1": "x", "answer": "1"}])
    with pytest.raises(DataError) as exc:
        load_questions("winogrande_m", "validation", path=file)
    assert "line 1: missing or non-text field(s) ['option2']" in str(exc.value)


# --------------------------------------------------------------------------- BoolQ


def test_boolq_real_superglue_rows():
    """SuperGLUE's BoolQ (Laplace-LoRA's copy), real validation rows: the passage and the
    question in the question column, choices no/yes, label 0/1 as the gold index."""
    frame = load_questions("boolq", "validation", path=FIXTURES / "boolq")
    assert len(frame) == 24
    assert frame["id"].iloc[0] == "validation-0"
    assert frame["answer"].tolist()[:6] == [0, 1, 1, 1, 1, 0]
    assert frame["choices"].iloc[0] == list(BOOLQ_CHOICES) == ["no", "yes"]
    first = frame["question"].iloc[0]
    assert first.startswith("Ethanol fuel -- All biomass goes through at least some of these steps")
    assert first.endswith("gasoline.\nQuestion: does ethanol take more energy make that produces?")


def test_boolq_schemas_agree(tmp_path):
    """MADE UP rows in the three schemas BoolQ comes in: google/boolq (answer bool), its
    original release (plus title, unused) and SuperGLUE (idx, label 0/1) give one table."""
    rows = [("is the sky green", False, "The sky is blue."), ("do cats purr", True, "Cats purr.")]
    google = [{"question": q, "answer": a, "passage": p} for q, a, p in rows]
    release = [{"question": q, "title": "T", "answer": a, "passage": p} for q, a, p in rows]
    superglue = [
        {"question": q, "passage": p, "idx": n, "label": int(a)} for n, (q, a, p) in enumerate(rows)
    ]
    frames = [
        load_questions("boolq", "validation", path=write_jsonl(tmp_path / "g.jsonl", google)),
        load_questions("boolq", "dev", path=write_jsonl(tmp_path / "dev.jsonl", release)),
        load_questions(
            "boolq", "validation", path=write_parquet(tmp_path / "v.parquet", superglue)
        ),
    ]
    for frame in frames[1:]:
        pd.testing.assert_frame_equal(frames[0], frame)
    assert frames[0]["answer"].tolist() == [0, 1]
    assert frames[0]["question"].tolist() == [
        BOOLQ_QUESTION.format(passage="The sky is blue.", question="is the sky green"),
        "Cats purr.\nQuestion: do cats purr?",
    ]


def test_boolq_folder_splits_and_errors(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"question": "q", "answer": True, "passage": "p"}])
    write_jsonl(tmp_path / "val.jsonl", [{"question": "r", "label": "maybe", "passage": "p"}])
    assert load_questions("boolq", "train", path=tmp_path)["answer"].tolist() == [1]
    with pytest.raises(DataError) as exc:
        load_questions("boolq", "validation", path=tmp_path)
    assert "val.jsonl: line 1: answer/label 'maybe' is not true/false" in str(exc.value)
    with pytest.raises(DataError) as exc:
        load_questions("boolq", "test", path=tmp_path)
    assert "boolq has no split 'test'; its splits: train, validation" in str(exc.value)


# --------------------------------------------------------------------------- ARC, OpenBookQA


def test_arc_easy_real_hub_rows():
    """ARC-Easy as the hub serves it (exported to JSON), real rows of train and validation."""
    validation = load_questions("arc_easy", "validation", path=FIXTURES / "arc_easy")
    train = load_questions("arc_easy", "train", path=FIXTURES / "arc_easy")
    assert len(validation) == len(train) == 24
    first = validation.iloc[0]
    assert (first["id"], first["answer"]) == ("MCAS_2000_4_6", 0)
    assert first["question"] == "Which technology was developed most recently?"
    assert list(first["choices"]) == [
        "cellular telephone",
        "television",
        "refrigerator",
        "airplane",
    ]
    # ARC's questions have 3 to 5 choices; row 18 of the validation split has five
    assert validation["choices"].map(len).tolist() == [4] * 17 + [5] + [4] * 6
    assert train["answer"].between(0, 3).all()
    assert not set(validation["id"]) & set(train["id"])


def test_arc_challenge_real_release_rows():
    frame = load_questions("arc_challenge", "validation", path=FIXTURES / "arc_challenge")
    assert frame["id"].tolist()[:2] == ["Mercury_SC_407695", "Mercury_7103565"]
    assert frame["answer"].tolist() == [3, 2, 3, 0, 1]
    assert "\u2022 Star patterns stay the same" in frame["question"].iloc[2]
    with pytest.raises(DataError, match="no train file for arc_challenge"):
        load_questions("arc_challenge", "train", path=FIXTURES / "arc_challenge")


def test_openbookqa_real_release_rows():
    sizes = {
        split: len(load_questions("openbookqa", split, path=FIXTURES / "openbookqa"))
        for split in ("train", "validation", "test")
    }
    assert sizes == {"train": 4, "validation": 2, "test": 2}
    dev = load_questions("openbookqa", "dev", path=FIXTURES / "openbookqa")
    assert dev["id"].tolist() == ["8-376", "7-57"] and dev["answer"].tolist() == [0, 3]
    assert dev["question"].iloc[0].startswith("Frilled sharks and angler fish live far beneath")


# --------------------------------------------------------------------------- MMLU OOD sets


@pytest.mark.parametrize(
    ("selection", "subjects"),
    [
        ({"subjects": ["college_chemistry"]}, ["college_chemistry"]),
        ({"subjects": ["college_physics"]}, ["college_physics"]),
        ({"group": "stem", "subjects": ["college_chemistry", "college_physics"]}, None),
    ],
)
def test_mmlu_ood_subjects(selection, subjects):
    frame = load_questions("mmlu", "test", path=FIXTURES / "mmlu", **selection)
    expected = subjects or ["college_chemistry", "college_physics"]
    assert sorted(set(frame["subject"])) == expected
    assert len(frame) == 2 * len(expected)
    assert set(frame["group"]) == {"stem"} and frame["choices"].map(len).eq(4).all()


# --------------------------------------------------------------------------- full copies

#: The protocol's split sizes (rows on the hub), as the reference code loads them: source,
#: split, folder under $LORAUQ_REALDATA, extra arguments, rows.
FULL_SIZES = [
    ("winogrande_s", "train", "winogrande", {}, 640),
    ("winogrande_m", "train", "winogrande", {}, 2558),
    ("winogrande_s", "validation", "winogrande", {}, 1267),
    ("arc_challenge", "train", "arc_challenge", {}, 1119),
    ("arc_challenge", "validation", "arc_challenge", {}, 299),
    ("arc_easy", "train", "arc_easy", {}, 2251),
    ("arc_easy", "validation", "arc_easy", {}, 570),
    ("openbookqa", "train", "openbookqa", {}, 4957),
    ("openbookqa", "validation", "openbookqa", {}, 500),
    ("boolq", "train", "boolq", {}, 9427),
    ("boolq", "validation", "boolq", {}, 3270),
    ("mmlu", "test", "mmlu", {"subjects": ["college_chemistry"]}, 100),
    ("mmlu", "test", "mmlu", {"subjects": ["college_physics"]}, 102),
]


@pytest.mark.realdata
@pytest.mark.parametrize(("source", "split", "folder", "extra", "rows"), FULL_SIZES)
def test_full_copies_have_the_protocol_sizes(source, split, folder, extra, rows):
    root = REALDATA / folder
    if not root.is_dir():
        pytest.skip(f"full {folder} copy: set LORAUQ_REALDATA to a folder holding {folder}/")
    try:
        frame = load_questions(source, split, path=root, **extra)
    except DataError as exc:
        if "no " in str(exc) and " file for " in str(exc):
            pytest.skip(f"the {folder} copy has no {split} split: {exc}")
        raise
    assert len(frame) == rows
    assert frame["id"].is_unique and frame["answer"].ge(0).all()


# --------------------------------------------------------------------------- the documented table


def protocol_table() -> list[dict[str, str]]:
    """The rows of docs/params.md's table of the protocol's sources."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "params.md").read_text("utf-8")
    lines = text[text.index("| task | `source` | extra keys |") :].splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = []
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True)))
    return rows


def test_documented_protocol_sources_load_at_their_pinned_revision(monkeypatch):
    """Every row of the table, loaded as documented (hub captured): the call goes to the
    documented hub id, config and split with the documented revision, which is the pin."""
    import datasets
    import yaml

    from lorauq.data import PINNED_REVISIONS

    calls = []

    def fake_load_dataset(hub_id, config=None, *, split, revision=None):
        calls.append((hub_id, config, split, revision))
        row = {"sentence": "A _.", "option1": "x", "option2": "y", "answer": "1"}
        if hub_id == "google/boolq":
            row = {"question": "q", "answer": True, "passage": "p"}
        elif hub_id == "cais/mmlu":
            row = {"question": "q", "choices": list("abcd"), "answer": 0}
        elif hub_id != "allenai/winogrande":
            row = {"id": "i", "question": "q", "answerKey": "A"}
            row["choices"] = {"label": ["A", "B"], "text": ["x", "y"]}
        return datasets.Dataset.from_list([row])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    table = protocol_table()
    assert len(table) == 8
    for row in table:
        source = row["`source`"].strip("`")
        revision = row["`revision`"].strip("`")
        hub_id, _, config = row["hub id (config)"].partition(" (")
        hub_id, config = hub_id.strip("`"), config.strip("`)") or None
        extra = yaml.safe_load(row["extra keys"].replace("`", "")) or {}
        assert revision == PINNED_REVISIONS[hub_id], row
        for split in row["train / eval `split`"].replace("`", "").split(" / "):
            if split == "—":
                continue
            calls.clear()
            load_questions(source, split, revision=revision, **extra)
            assert calls == [(hub_id, config, split, revision)], row
