"""The method ``early_stopped``: each member's checkpoint chosen by its held-out NLL (ties: the
earlier), its record's cost and its check, on hand-built logits (no model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lorauq.config import load_params
from lorauq.errors import ConfigError, StoreError
from lorauq.methods.early_stopped import choose_checkpoints
from lorauq.methods.registry import METHODS
from lorauq.schema import LOGIT_COLUMNS

ROOT = Path(__file__).resolve().parents[1]

#: Three labelled held-out questions (3 letters; the gold letters 0, 1, 2) and one unlabelled.
ANSWERS = [0, 1, 2, -1]


def _rows(member: int, epoch: int, logits: list[list[float]]) -> pd.DataFrame:
    """Logits-store-like rows of one member and checkpoint on the held-out rows."""
    frame = pd.DataFrame(
        {
            "member": member,
            "epoch": epoch,
            "eval_set": "calibration",
            "id": [f"q{i}" for i in range(len(logits))],
            "answer": ANSWERS[: len(logits)],
        }
    )
    letters = np.full((len(logits), len(LOGIT_COLUMNS)), np.nan)
    letters[:, :3] = logits
    return pd.concat([frame, pd.DataFrame(letters, columns=LOGIT_COLUMNS)], axis=1)


def _nll(logits: list[list[float]]) -> float:
    """Mean NLL of the labelled rows' softmax over their 3 letters, by hand."""
    z = np.asarray(logits, dtype=float)[:3]
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-np.mean(log_p[np.arange(3), ANSWERS[:3]]))


FLAT = [[0.0, 0.0, 0.0]] * 3 + [[5.0, 0.0, 0.0]]
GOOD = [[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0], [0.0, 9.0, 0.0]]
WRONG = [[0.0, 3.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 9.0]]


def test_each_member_stops_at_its_lowest_held_out_nll_and_ties_go_to_the_earlier():
    held = pd.concat(
        [
            # member 0: flat, good, wrong: checkpoint 2
            _rows(0, 1, FLAT), _rows(0, 2, GOOD), _rows(0, 3, WRONG),
            # member 1: good at 1 and again at 3 (the same NLL), flat at 2: the earlier, 1
            _rows(1, 1, GOOD), _rows(1, 2, FLAT), _rows(1, 3, GOOD),
            # member 4: one checkpoint, which it must take
            _rows(4, 3, WRONG),
        ],
        ignore_index=True,
    )  # fmt: skip
    stops = choose_checkpoints(held)
    assert {m: s.epoch for m, s in stops.items()} == {0: 2, 1: 1, 4: 3}
    assert stops[0].nll == pytest.approx({1: _nll(FLAT), 2: _nll(GOOD), 3: _nll(WRONG)})
    assert stops[0].nll[1] == pytest.approx(np.log(3.0))  # uniform over 3 letters
    assert stops[1].nll[1] == stops[1].nll[3]  # the tie is exact: the same logits
    assert list(stops[4].nll) == [3]


def test_unlabelled_held_out_rows_do_not_count():
    """The fourth question (answer −1) strongly favours checkpoint 1's letters: ignored."""
    held = pd.concat([_rows(0, 1, FLAT), _rows(0, 2, GOOD)], ignore_index=True)
    assert choose_checkpoints(held)[0].nll[1] == pytest.approx(np.log(3.0))
    unlabelled = held.assign(answer=-1)
    with pytest.raises(StoreError, match="no labelled held-out rows"):
        choose_checkpoints(unlabelled)


def test_its_cost_counts_an_ensemble_and_every_checkpoint_on_the_held_out_rows():
    params = load_params(
        ROOT / "params.yaml", {"data.calibration_fraction": 0.25, "methods.run": ["early_stopped"]}
    )
    m = len(params.members)
    cost = METHODS["early_stopped"].cost(params, {"checkpoint_count": 4})
    assert cost == {"finetune_passes": m, "eval_passes": m * 4 + m}
    assert METHODS["early_stopped"].selected_by == "lowest held-out NLL, per member"


def test_it_needs_held_out_rows_only_when_it_runs():
    path = ROOT / "params.yaml"
    load_params(path, {"data.calibration_fraction": 0.0, "methods.run": []})
    with pytest.raises(ConfigError, match="'early_stopped', which chooses each member's"):
        load_params(path, {"data.calibration_fraction": 0.0, "methods.run": ["early_stopped"]})


def test_its_run_is_the_members_stored_logits_at_their_own_checkpoints(monkeypatch):
    """Five members, three checkpoints, each member's held-out rows best at another one: the
    samples are each member's stored logits at its own checkpoint, all labelled with the final
    checkpoint, and ``fitted`` says which and at what step."""
    from lorauq.methods import early_stopped

    params = load_params(
        ROOT / "params.yaml", {"data.calibration_fraction": 0.1, "methods.run": ["early_stopped"]}
    )
    assert params.members == [0, 1, 2, 3, 4]
    best = {0: 1, 1: 2, 2: 3, 3: 2, 4: 1}
    stored = []
    for m in params.members:
        for e in (1, 2, 3):
            rows = _rows(m, e, GOOD[:3]).assign(eval_set="in_domain", logsumexp_vocab=9.0)
            rows["logit_a"] = 10.0 * m + e  # which member and checkpoint, readable back
            stored.append(rows)
    stored = pd.concat(stored, ignore_index=True)
    held = pd.concat(
        [_rows(m, e, GOOD if e == best[m] else FLAT) for m in best for e in (1, 2, 3)],
        ignore_index=True,
    )
    folders = {m: {e: Path(f"member-{m}") / f"epoch-{e}" for e in (1, 2, 3)} for m in best}
    monkeypatch.setattr(early_stopped, "main_logits", lambda params, layout: stored)
    monkeypatch.setattr(early_stopped, "member_checkpoints", lambda p, layout, m: folders[m])
    monkeypatch.setattr(early_stopped, "held_out_logits", lambda *args: held)
    # the checkpoint's training log: checkpoint k at step 100·k
    monkeypatch.setattr(
        early_stopped, "training_record", lambda folder: {"step": 100 * int(folder.name[6:])}
    )
    out = early_stopped.run(params, layout=None)
    samples = out.samples
    assert set(samples["epoch"]) == {3} and sorted(set(samples["member"])) == [0, 1, 2, 3, 4]
    for m, e in best.items():
        got = samples[samples["member"] == m]
        assert len(got) == 3 and set(got["logit_a"]) == {10.0 * m + e}
    assert out.fitted["chosen_epoch"] == [1, 2, 3, 2, 1]
    assert out.fitted["chosen_step"] == [100, 200, 300, 200, 100]
    assert out.fitted["checkpoint_count"] == 3 and out.fitted["calibration_rows"] == 3
    assert out.fitted["held_out_nll"][0] == pytest.approx([_nll(GOOD), _nll(FLAT), _nll(FLAT)])
    assert out.runs == {}
