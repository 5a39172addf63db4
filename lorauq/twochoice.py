"""WinoGrande and BoolQ, the two-choice tasks of the Bayesian-LoRA protocol, as Question tables.

The protocol (Laplace-LoRA, BLoB, TFB, IVON-LoRA; run by ``Wang-ML-Lab/bayesian-peft``)
trains on WinoGrande's ``winogrande_s`` and ``winogrande_m`` training sets and on BoolQ's,
and evaluates on their validation splits. Both become ordinary Question rows, so the same
prompt, letter read-out and metrics serve them as every other source:

WinoGrande
    ``sentence`` (with its blank ``_``) is the question, ``option1``/``option2`` the two
    choices, ``answer`` "1"/"2" the gold index 0/1 ("" in the unlabelled test split: −1).
    The size configs share one validation split (the release's ``dev.jsonl``, 1,267 rows);
    they differ only in the training set (``train_s.jsonl``: 640 rows, ``train_m.jsonl``:
    2,558). Ids are ``{split}-{index}``: the release's ``qID`` has no column on the hub, so
    row numbers are what both copies share.
BoolQ
    A yes/no question about a passage. The prompt template has no passage slot, so the
    question column carries both: :data:`BOOLQ_QUESTION` (passage, then the question). The
    choices are ``no``/``yes`` (letters a/b), so the gold index is the hub's label as an
    integer (False = 0, True = 1), the class order Laplace-LoRA reads its logits in. Rows
    come as ``google/boolq`` (``question, answer, passage``; the original release adds
    ``title``, which is not used) or as SuperGLUE's BoolQ (``question, passage, idx, label``,
    whose passages start with the page title). BoolQ has no test split.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lorauq.errors import DataError
from lorauq.hub import Located, SourceRead, hub_items
from lorauq.questions import Record
from lorauq.sourcefiles import local_items

__all__ = [
    "BOOLQ_CHOICES",
    "BOOLQ_HUB_ID",
    "BOOLQ_QUESTION",
    "TWO_CHOICE_HUB",
    "TWO_CHOICE_SPLITS",
    "WINOGRANDE_CONFIGS",
    "WINOGRANDE_HUB_ID",
    "At",
    "load_two_choice",
]

WINOGRANDE_HUB_ID = "allenai/winogrande"
BOOLQ_HUB_ID = "google/boolq"
#: Source name → ``allenai/winogrande`` config: the training sizes and the debiased set.
WINOGRANDE_CONFIGS = {
    f"winogrande_{size}": f"winogrande_{size}" for size in ("xs", "s", "m", "l", "xl", "debiased")
}
TWO_CHOICE_HUB = (*WINOGRANDE_CONFIGS, "boolq")
TWO_CHOICE_SPLITS: dict[str, tuple[str, ...]] = {
    **{source: ("train", "validation", "test") for source in WINOGRANDE_CONFIGS},
    "boolq": ("train", "validation"),
}
#: BoolQ's question column: the passage, then the question (BoolQ's questions are lower case
#: and end without a question mark; one is added).
BOOLQ_QUESTION = "{passage}\nQuestion: {question}?"
BOOLQ_CHOICES = ("no", "yes")
#: WinoGrande's ``answer`` → gold index; "" is the unlabelled test split.
_WINOGRANDE_ANSWERS = {"1": 0, "2": 1, "": -1}
#: BoolQ's ``answer``/``label`` as the hub, SuperGLUE and CSV exports write it → gold index.
_BOOLQ_ANSWERS = {"false": 0, "0": 0, "true": 1, "1": 1, "-1": -1, "": -1}


def load_two_choice(
    source: str,
    split: str,
    path: str | os.PathLike[str] | None,
    revision: str | None,
    reads: list[SourceRead],
) -> list[Record]:
    """The records of one split (already canonical: train, validation or test) of WinoGrande
    or BoolQ, from the hub at ``revision`` or from local files; each read appended to
    ``reads``."""
    if source == "boolq":
        located = (
            hub_items(source, BOOLQ_HUB_ID, None, split, revision, reads)
            if path is None
            else local_items(path, split, source, reads)
        )
        to_record = _boolq_record
    else:
        config = WINOGRANDE_CONFIGS[source]
        located = (
            hub_items(source, WINOGRANDE_HUB_ID, config, split, revision, reads)
            if path is None
            else _winogrande_local(path, split, source, config, reads)
        )
        to_record = _winogrande_record
    records = []
    index = 0  # ids number the split's rows across its files
    for origin, items in located:
        for where, item in items:
            records.append(to_record(item, source, f"{split}-{index}", (origin, where)))
            index += 1
    return records


def _winogrande_local(
    path: str | os.PathLike[str],
    split: str,
    source: str,
    config: str,
    reads: list[SourceRead],
) -> Located:
    """A split's file: ``path`` itself, a hub layout (``<config>/validation-*.parquet``), or
    the original release (``train_s.jsonl``, ``dev.jsonl``, ``test.jsonl``, also inside its
    ``winogrande_1.1/`` folder), whose training file is named after the size."""
    root = Path(path)
    if not root.is_dir() or (root / config).is_dir():
        return local_items(root, split, source, reads, subfolders=(config,))
    release = root / "winogrande_1.1" if (root / "winogrande_1.1").is_dir() else root
    names = (f"train_{config.removeprefix('winogrande_')}",) if split == "train" else None
    return local_items(release, split, source, reads, names=names)


#: Where a row came from: (file or hub split, "line 3" / "row 3").
At = tuple[str, str]


def _row_fields(item: dict[str, Any], keys: tuple[str, ...], at: At, task: str) -> list[str]:
    """The text fields ``keys`` of a row, or a DataError naming the row and what it lacks."""
    missing = [key for key in keys if not isinstance(item.get(key), str)]
    if missing:
        raise DataError(
            f"{at[0]}: {at[1]}: missing or non-text field(s) {missing}; a {task} row has {', '.join(keys)} "
            f"(has {sorted(item)})"
        )
    return [item[key] for key in keys]


def _record(
    source: str, row_id: str, at: At, question: str, choices: tuple[str, str], answer: int
) -> Record:
    return {
        "id": row_id,
        "source": source,
        "subject": source,
        "group": source,
        "question": question,
        "choices": list(choices),
        "answer": answer,
        "_origin": at[0],
        "_where": at[1],
    }


def _winogrande_record(item: dict[str, Any], source: str, row_id: str, at: At) -> Record:
    sentence, option1, option2 = _row_fields(
        item, ("sentence", "option1", "option2"), at, "WinoGrande"
    )
    raw = item.get("answer")
    answer = _WINOGRANDE_ANSWERS.get("" if raw is None else str(raw).strip())
    if answer is None:
        raise DataError(f"{at[0]}: {at[1]}: answer {raw!r} is not '1', '2' or empty (unlabelled)")
    return _record(source, row_id, at, sentence, (option1, option2), answer)


def _boolq_record(item: dict[str, Any], source: str, row_id: str, at: At) -> Record:
    question, passage = _row_fields(item, ("question", "passage"), at, "BoolQ")
    raw = item["answer"] if "answer" in item else item.get("label")
    answer = _BOOLQ_ANSWERS.get("" if raw is None else str(raw).strip().lower())
    if answer is None:
        raise DataError(f"{at[0]}: {at[1]}: answer/label {raw!r} is not true/false (or 1/0)")
    text = BOOLQ_QUESTION.format(passage=passage.strip(), question=question.strip().rstrip("?"))
    return _record(source, row_id, at, text, BOOLQ_CHOICES, answer)
