"""The methods' ground truth in the tiny world, as measured for world seeds 0-4.

``docs/methods-ground-truth.csv`` is ``scripts/methods_ground_truth.py``'s output and
``docs/methods.md`` shows its summary; the checks' arithmetic is tested on hand-built sets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from workspace import load_script

from lorauq.schema import LOGIT_COLUMNS
from lorauq.store import normalize_logits_frame

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture(scope="module")
def script():
    return load_script("methods_ground_truth")


def _measured() -> pd.DataFrame:
    return pd.read_csv(DOCS / "methods-ground-truth.csv")


def test_five_world_seeds_and_every_method_were_measured() -> None:
    from lorauq.config import METHODS

    table = _measured()
    assert sorted(set(table["world_seed"])) == list(range(5))
    expected = {"lora_ensemble", "lora_ensemble@best", "single@best", *METHODS}
    expected.add("laplace_linearised")
    assert set(table["method"]) == expected
    assert len(table) == 5 * len(expected)


def test_the_docs_show_the_measured_table(script) -> None:
    text = (DOCS / "methods.md").read_text(encoding="utf-8")
    assert script.render(_measured()) in text


def _rows(eval_set: str, member_logits: list[np.ndarray]) -> list[dict]:
    rows = []
    for member, logits in enumerate(member_logits):
        for q, row in enumerate(logits):
            cells = dict(zip(LOGIT_COLUMNS, [*row, *[np.nan] * (10 - len(row))], strict=True))
            rows.append(
                {"member": member, "epoch": 1, "eval_set": eval_set, "id": f"{eval_set}{q}",
                 "subject": "s", "group": "g", "answer": 0, "n_choices": 4, "n_letters": 4,
                 **cells, "logsumexp_vocab": 10.0}
            )  # fmt: skip
    return rows


def test_checks_separate_disagreement_from_shared_doubt(script) -> None:
    """Members that agree and are sure (in_domain), agree and are unsure (noisy, known is
    sure too), disagree and are sure (unseen): MI must single out unseen, EE noisy."""
    sure = np.array([[6.0, 0, 0, 0]] * 6)
    unsure = np.zeros((6, 4))
    other = np.array([[0, 6.0, 0, 0]] * 6)
    rows = _rows("in_domain", [sure, sure]) + _rows("known", [sure, sure])
    rows += _rows("noisy", [unsure, unsure]) + _rows("unseen", [sure, other])
    table = normalize_logits_frame(pd.DataFrame(rows))
    assert script.method_checks([table]) == {
        "auroc_mi_unseen_vs_in_domain": 1.0,
        "auroc_ee_noisy_vs_in_domain": 1.0,
        "auroc_ee_noisy_vs_known": 1.0,
    }
    one = table[table["member"] == 0]
    assert script.method_checks([one])["auroc_mi_unseen_vs_in_domain"] == "one sample"


def test_measuring_some_methods_replaces_their_rows_and_keeps_the_others(script) -> None:
    """``--methods laplace``: laplace's rows and its read-out's come from the new run, every
    other method's (the ensemble's included) stay as measured before."""

    def table(tag: str, names: list[str]) -> pd.DataFrame:
        return pd.DataFrame({"world_seed": 0, "method": names, "tag": tag})

    kept = table("old", ["lora_ensemble", "laplace", "laplace_linearised", "ivon"])
    measured = table("new", ["lora_ensemble", "laplace", "laplace_linearised"])
    got = script.merged(kept, measured, ["laplace"]).set_index("method")["tag"]
    assert got.to_dict() == {
        "lora_ensemble": "old",
        "ivon": "old",
        "laplace": "new",
        "laplace_linearised": "new",
    }
    assert list(got.index) == ["lora_ensemble", "ivon", "laplace", "laplace_linearised"]
