"""Published results of the Bayesian-LoRA protocol, read and checked before anyone compares.

``data/reference/bayesian_lora_protocol.csv`` holds numbers copied from the papers that report
on the protocol (Laplace-LoRA, BLoB, TFB, IVON-LoRA): one value per row, with the paper,
arXiv id, table and page it was copied from. A number without a place to check it against
cannot be trusted beside ours, so a row without its provenance, with a value outside its
metric's range or with a unit the metric is not printed in is a DataError naming the row.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from lorauq.errors import DataError

__all__ = [
    "EVAL_SETS",
    "METHODS",
    "METRIC_UNITS",
    "PROTOCOL_REFERENCE_COLUMNS",
    "TASKS",
    "read_protocol_reference",
]

PROTOCOL_REFERENCE_COLUMNS = [
    "train_task",
    "eval_set",
    "model",
    "method",
    "metric",
    "value",
    "std",
    "unit",
    "paper",
    "arxiv_id",
    "table",
    "page",
    "note",
]
#: The protocol's tasks and out-of-distribution sets, as lorauq's source names call them.
TASKS = ("winogrande_s", "arc_challenge", "arc_easy", "winogrande_m", "openbookqa", "boolq")
EVAL_SETS = (*TASKS, "mmlu_college_chemistry", "mmlu_college_physics")
METHODS = ("mle", "map", "mc_dropout", "ensemble", "laplace", "blob", "tfb", "ivon")
#: Metric → (unit the papers print it in, lowest, highest value).
METRIC_UNITS = {
    "accuracy": ("percent", 0.0, 100.0),
    "ece": ("percent", 0.0, 100.0),
    "nll": ("nats", 0.0, float("inf")),
    "brier": ("fraction", 0.0, 2.0),
}
_ARXIV_ID = re.compile(r"\d{4}\.\d{4,5}(v\d+)?")
#: Columns every row must fill: the value and where it was copied from.
_REQUIRED = ("train_task", "eval_set", "model", "method", "metric", "value", "unit", "paper")
_PROVENANCE = ("arxiv_id", "table", "page")


def _row_problem(row: pd.Series) -> str | None:
    """The first way a row breaks the file's rules, or None."""
    for column in (*_REQUIRED, *_PROVENANCE):
        if not str(row[column]).strip():
            return f"{column} is empty (every number needs its paper, arXiv id, table and page)"
    if not _ARXIV_ID.fullmatch(str(row["arxiv_id"])):
        return f"arxiv_id {row['arxiv_id']!r} is not an arXiv id such as 2406.11675"
    checks = (("train_task", TASKS), ("eval_set", EVAL_SETS), ("method", METHODS))
    for column, valid in checks:
        if row[column] not in valid:
            return f"{column} {row[column]!r} is not one of {list(valid)}"
    if row["metric"] not in METRIC_UNITS:
        return f"metric {row['metric']!r} is not one of {list(METRIC_UNITS)}"
    unit, low, high = METRIC_UNITS[row["metric"]]
    if row["unit"] != unit:
        return f"{row['metric']} is printed in {unit}, not {row['unit']!r}"
    try:
        value = float(row["value"])
        std = float(row["std"]) if str(row["std"]).strip() else 0.0
    except ValueError:
        return f"value {row['value']!r} / std {row['std']!r} is not a number"
    if not low <= value <= high:
        return f"{row['metric']} {value} outside [{low}, {high}] {unit}"
    if std < 0:
        return f"std {std} is negative"
    return None


def read_protocol_reference(path: str | Path) -> pd.DataFrame:
    """The published rows, every one checked; ``value`` and ``std`` (NaN where not printed)
    as floats."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file of published numbers")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if list(table.columns) != PROTOCOL_REFERENCE_COLUMNS:
        raise DataError(
            f"{path}: columns {list(table.columns)}; expected {PROTOCOL_REFERENCE_COLUMNS}"
        )
    for number, (_, row) in enumerate(table.iterrows(), start=1):
        problem = _row_problem(row)
        if problem is not None:
            raise DataError(f"{path}: row {number} (line {number + 1}): {problem}")
    key = ["train_task", "eval_set", "model", "method", "metric", "paper", "table"]
    duplicated = table.duplicated(key)
    if duplicated.any():
        number = int(duplicated.to_numpy().argmax()) + 1
        raise DataError(f"{path}: row {number} (line {number + 1}): the same value twice")
    table["value"] = table["value"].astype(float)
    table["std"] = pd.to_numeric(table["std"].replace("", None), errors="coerce")
    return table
