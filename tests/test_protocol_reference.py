"""Published numbers of the Bayesian-LoRA protocol: every row has its provenance, a value in
its metric's range and unit, and the README says what is missing."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from lorauq import comparison
from lorauq.errors import DataError
from lorauq.protocol_reference import (
    METRIC_UNITS,
    PROTOCOL_REFERENCE_COLUMNS,
    read_protocol_reference,
)

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "data" / "reference" / "bayesian_lora_protocol.csv"
README = ROOT / "data" / "reference" / "README.md"
#: The papers the file is for: arXiv id → short name.
PAPERS = {
    "2308.13111": "Laplace-LoRA",
    "2406.11675": "BLoB",
    "2412.05723": "TFB",
    "2506.14280": "IVON-LoRA",
}
GOOD = {
    "train_task": "openbookqa",
    "eval_set": "mmlu_college_chemistry",
    "model": "meta-llama/Llama-2-7b-hf",
    "method": "blob",
    "metric": "ece",
    "value": "12.5",
    "std": "0.5",
    "unit": "percent",
    "paper": "Made-up paper, for this test",
    "arxiv_id": "2406.11675",
    "table": "Table 9",
    "page": "9",
    "note": "",
}


def test_shipped_file_every_row_has_provenance():
    table = read_protocol_reference(REFERENCE)
    assert list(table.columns) == PROTOCOL_REFERENCE_COLUMNS
    for _, row in table.iterrows():
        assert row["paper"] and row["table"] and row["page"], row.to_dict()
        assert row["arxiv_id"].split("v")[0] in PAPERS, row.to_dict()
        unit, low, high = METRIC_UNITS[row["metric"]]
        assert row["unit"] == unit and low <= row["value"] <= high, row.to_dict()


def test_readme_describes_the_columns_and_lists_every_paper_without_rows():
    readme = README.read_text(encoding="utf-8")
    section = readme[readme.index("# Published results of the Bayesian-LoRA protocol") :]
    missing = [c for c in PROTOCOL_REFERENCE_COLUMNS if f"| `{c}` |" not in section]
    assert not missing, f"README does not describe {missing}"
    with REFERENCE.open(newline="", encoding="utf-8") as handle:
        cited = {row["arxiv_id"].split("v")[0] for row in csv.DictReader(handle)}
    listed = section[section.index("## What is missing") :]
    for arxiv_id, name in PAPERS.items():
        if arxiv_id not in cited:
            assert re.search(rf"{name} — .*arXiv {arxiv_id}", listed, re.S), name


def write(tmp_path: Path, *rows: dict) -> Path:
    path = tmp_path / "published.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, PROTOCOL_REFERENCE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_a_good_row_loads_with_numbers(tmp_path):
    table = read_protocol_reference(
        write(tmp_path, GOOD, {**GOOD, "metric": "nll", "value": "1.2", "unit": "nats", "std": ""})
    )
    assert table["value"].tolist() == [12.5, 1.2]
    assert table["std"].iloc[0] == 0.5 and table["std"].isna().iloc[1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"page": ""}, "row 2 (line 3): page is empty"),
        ({"table": " "}, "row 2 (line 3): table is empty"),
        ({"arxiv_id": "BLoB"}, "arxiv_id 'BLoB' is not an arXiv id"),
        ({"value": "150"}, "accuracy 150.0 outside [0.0, 100.0] percent"),
        ({"metric": "ece", "unit": "fraction", "value": "0.1"}, "ece is printed in percent, not"),
        ({"metric": "nll", "value": "-1", "unit": "nats"}, "nll -1.0 outside [0.0, inf] nats"),
        ({"method": "swag"}, "method 'swag' is not one of"),
        ({"eval_set": "mmlu"}, "eval_set 'mmlu' is not one of"),
        ({"value": "n/a"}, "value 'n/a' / std '0.5' is not a number"),
        ({"std": "-0.1"}, "std -0.1 is negative"),
        ({}, "row 2 (line 3): the same value twice"),
    ],
)
def test_bad_rows_are_refused_naming_the_row(tmp_path, change, message):
    good = {**GOOD, "eval_set": "arc_easy", "metric": "accuracy", "value": "80"}
    path = write(tmp_path, good, {**good, **change})
    with pytest.raises(DataError) as exc:
        read_protocol_reference(path)
    assert message in str(exc.value)


def test_other_columns_are_refused_and_figures_comparison_does_not_read_it(tmp_path):
    path = tmp_path / "wrong.csv"
    path.write_text("task,value\nboolq,80\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"columns \['task', 'value'\]; expected"):
        read_protocol_reference(path)
    # a separate schema: the figures stage's comparison (Fig A-C rows) refuses the file
    with pytest.raises(DataError, match=r"missing column\(s\) \['figure'"):
        comparison.read_reference(REFERENCE)
