"""The logits store: schema, round trips, the prior broadcast, failed writes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lorauq.errors import LorauqError, StoreError
from lorauq.schema import KEY_COLUMNS, LOGIT_COLUMNS, LOGITS_COLUMNS, PRIOR_MEMBER
from lorauq.store import (
    broadcast_prior,
    normalize_logits_frame,
    read_logits,
    validate_logits,
    write_logits,
)


def make_frame(member=0, epochs=(1,), eval_sets=("in_domain",), n_choices=(4, 5, 2), seed=0):
    """A valid logits table: one row per (epoch, eval set, question), only the used columns."""
    rng = np.random.default_rng(seed)
    rows = []
    for epoch in epochs:
        for eval_set in eval_sets:
            for i, k in enumerate(n_choices):
                row = {
                    "member": member,
                    "epoch": epoch,
                    "eval_set": eval_set,
                    "id": f"q{i}",
                    "subject": f"subject{i % 2}",
                    "group": eval_set,
                    "answer": i % k,
                    "n_choices": k,
                    "logsumexp_vocab": float(rng.normal() + 5.0),
                }
                for j in range(k):
                    row[LOGIT_COLUMNS[j]] = float(rng.normal())
                rows.append(row)
    return pd.DataFrame(rows)


def files_in(folder):
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- round trip


def test_round_trip_dtypes_nan_and_order(tmp_path):
    frame = make_frame(member=2, epochs=(2, 1), eval_sets=("b", "a"))
    # shuffle so sorting by key is observable
    frame = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    path = write_logits(frame, tmp_path / "member-2.parquet")
    assert path == tmp_path / "member-2.parquet"
    assert files_in(tmp_path) == ["member-2.parquet"]

    table = read_logits(path)
    assert list(table.columns) == LOGITS_COLUMNS
    assert len(table) == len(frame)
    for column in [*LOGIT_COLUMNS, "logsumexp_vocab"]:
        assert table[column].dtype == np.float32, column
    for column in ["member", "epoch", "answer", "n_choices"]:
        assert table[column].dtype == np.int64, column
    # sorted by (member, epoch, eval_set, id)
    keys = list(table[KEY_COLUMNS].itertuples(index=False, name=None))
    assert keys == sorted(keys)
    assert keys[0] == (2, 1, "a", "q0")
    # NaN exactly past n_choices, finite before
    logits = table[LOGIT_COLUMNS].to_numpy()
    used = np.arange(10)[None, :] < table["n_choices"].to_numpy()[:, None]
    assert np.isfinite(logits[used]).all()
    assert np.isnan(logits[~used]).all()
    # values survive (to float32 precision), matched by key
    expected = frame.set_index(KEY_COLUMNS).sort_index()
    got = table.set_index(KEY_COLUMNS).sort_index()
    for column in ["logit_a", "logit_b", "logsumexp_vocab"]:
        np.testing.assert_array_equal(
            got[column].to_numpy(), expected[column].to_numpy().astype(np.float32)
        )
    assert (got["answer"] == expected["answer"]).all()
    assert (got["subject"] == expected["subject"]).all()


def test_missing_logit_columns_are_added_as_nan(tmp_path):
    frame = make_frame(n_choices=(2, 3))
    assert "logit_j" not in frame.columns and "logit_d" not in frame.columns
    table = read_logits(write_logits(frame, tmp_path / "t.parquet"))
    assert table["logit_j"].isna().all()
    assert table["logit_d"].isna().all()
    assert table.loc[table["n_choices"] == 3, "logit_c"].notna().all()


def test_folder_read_concatenates_files(tmp_path):
    write_logits(make_frame(member=0, seed=1), tmp_path / "member-0.parquet")
    write_logits(make_frame(member=1, seed=2), tmp_path / "member-1.parquet")
    (tmp_path / "notes.txt").write_text("not a table")
    table = read_logits(tmp_path)
    assert sorted(table["member"].unique()) == [0, 1]
    assert len(table) == 6
    one = read_logits(tmp_path / "member-1.parquet")
    np.testing.assert_array_equal(
        table.loc[table["member"] == 1, "logit_a"].to_numpy(), one["logit_a"].to_numpy()
    )


def test_prior_broadcast_to_every_member(tmp_path):
    prior = make_frame(member=PRIOR_MEMBER, epochs=(0,), eval_sets=("a", "b"), seed=5)
    write_logits(prior, tmp_path / "prior.parquet")
    write_logits(make_frame(member=0, epochs=(1, 2)), tmp_path / "member-0.parquet")
    write_logits(make_frame(member=3, epochs=(1, 2)), tmp_path / "member-3.parquet")
    table = read_logits(tmp_path)
    assert PRIOR_MEMBER not in set(table["member"])
    assert sorted(table["member"].unique()) == [0, 3]
    epoch0 = table[table["epoch"] == 0]
    assert len(epoch0) == 2 * len(prior)
    a = epoch0[epoch0["member"] == 0].reset_index(drop=True)
    b = epoch0[epoch0["member"] == 3].reset_index(drop=True)
    pd.testing.assert_frame_equal(a.drop(columns="member"), b.drop(columns="member"))
    # and the copies hold the prior's numbers
    stored = read_logits(tmp_path / "prior.parquet")
    np.testing.assert_array_equal(a["logit_a"].to_numpy(), stored["logit_a"].to_numpy())


def test_prior_alone_stays_minus_one(tmp_path):
    prior = make_frame(member=PRIOR_MEMBER, epochs=(0,))
    table = read_logits(write_logits(prior, tmp_path / "prior.parquet"))
    assert set(table["member"]) == {PRIOR_MEMBER}
    assert len(table) == len(prior)


def test_broadcast_prior_function():
    prior = make_frame(member=PRIOR_MEMBER, epochs=(0,))
    members = pd.concat([make_frame(member=m) for m in (4, 1)], ignore_index=True)
    out = broadcast_prior(pd.concat([prior, members], ignore_index=True))
    assert len(out) == len(members) + 2 * len(prior)
    assert sorted(out.loc[out["epoch"] == 0, "member"].unique()) == [1, 4]
    no_prior = broadcast_prior(members)
    assert no_prior is members


def test_prior_conflicting_with_member_epoch0_is_duplicate(tmp_path):
    write_logits(make_frame(member=PRIOR_MEMBER, epochs=(0,)), tmp_path / "prior.parquet")
    write_logits(make_frame(member=0, epochs=(0, 1)), tmp_path / "member-0.parquet")
    with pytest.raises(StoreError, match=r"duplicate key \(member=0, epoch=0"):
        read_logits(tmp_path)


# --------------------------------------------------------------------------- schema errors


def test_missing_column_named(tmp_path):
    frame = make_frame().drop(columns="subject")
    with pytest.raises(StoreError, match=r"lacks column\(s\) \['subject'\]"):
        write_logits(frame, tmp_path / "t.parquet")
    assert not (tmp_path / "t.parquet").exists()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_used_logit_names_row_and_id(tmp_path, bad):
    frame = make_frame(n_choices=(4, 5, 2, 3))
    frame.loc[2, "logit_b"] = bad  # row 2 has two choices: logit_b is used
    with pytest.raises(StoreError, match=r"non-finite letter logit in row 2 \(id 'q2'\)"):
        write_logits(frame, tmp_path / "t.parquet")
    assert files_in(tmp_path) == []


def test_value_past_n_choices_must_be_nan(tmp_path):
    frame = make_frame(n_choices=(4, 2))
    frame.loc[1, "logit_c"] = 0.5
    with pytest.raises(StoreError, match="past n_letters must be NaN"):
        write_logits(frame, tmp_path / "t.parquet")


def test_letters_past_the_choices_are_kept_when_stored(tmp_path):
    """data.stored_letters: a 4-choice question may carry logits of 5 letters (a–e)."""
    frame = make_frame(n_choices=(4, 2))
    frame["n_letters"] = 5
    frame.loc[:, "logit_e"] = 0.25
    frame.loc[1, ["logit_c", "logit_d"]] = [0.5, 0.75]
    back = read_logits(write_logits(frame, tmp_path / "t.parquet"))
    assert back["n_letters"].tolist() == [5, 5] and back["n_choices"].tolist() == [4, 2]
    assert back["logit_e"].tolist() == [0.25, 0.25]
    fewer = frame.assign(n_letters=3)
    with pytest.raises(StoreError, match=r"n_letters outside n_choices\.\.10"):
        write_logits(fewer, tmp_path / "u.parquet")


def test_tables_without_n_letters_store_their_choices(tmp_path):
    """A table written before n_letters existed reads as storing its choices' letters."""
    frame = normalize_logits_frame(make_frame(n_choices=(4, 2))).drop(columns="n_letters")
    frame.to_parquet(tmp_path / "old.parquet", index=False)
    assert read_logits(tmp_path / "old.parquet")["n_letters"].tolist() == [4, 2]


@pytest.mark.parametrize("answer", [4, 7, -2])
def test_answer_out_of_range(tmp_path, answer):
    frame = make_frame(n_choices=(4, 4))
    frame.loc[0, "answer"] = answer
    with pytest.raises(StoreError, match=r"answer outside -1\.\.n_choices-1"):
        write_logits(frame, tmp_path / "t.parquet")


def test_unlabelled_answer_allowed(tmp_path):
    frame = make_frame(n_choices=(4, 4))
    frame.loc[0, "answer"] = -1
    assert read_logits(write_logits(frame, tmp_path / "t.parquet"))["answer"].tolist() == [-1, 1]


@pytest.mark.parametrize("n", [1, 11])
def test_n_choices_out_of_range(n):
    frame = normalize_logits_frame(make_frame(n_choices=(3,)))
    frame["n_choices"] = n
    frame["answer"] = 0
    with pytest.raises(StoreError, match=r"n_choices outside 2\.\.10"):
        validate_logits(frame, "here")


def test_duplicate_key_named(tmp_path):
    frame = make_frame(member=3, epochs=(2,), eval_sets=("cqa",))
    frame = pd.concat([frame, frame.iloc[[1]]], ignore_index=True)
    with pytest.raises(
        StoreError, match=r"duplicate key \(member=3, epoch=2, eval_set='cqa', id='q1'\)"
    ):
        write_logits(frame, tmp_path / "t.parquet")


def test_write_error_names_path(tmp_path):
    frame = make_frame()
    frame.loc[0, "answer"] = 9
    target = tmp_path / "member-7.parquet"
    with pytest.raises(StoreError, match=r"member-7\.parquet: answer outside"):
        write_logits(frame, target)


# --------------------------------------------------------------------------- read errors


def test_missing_path(tmp_path):
    missing = tmp_path / "nowhere.parquet"
    with pytest.raises(StoreError, match=r"nowhere\.parquet: no such logits file or folder"):
        read_logits(missing)


def test_empty_folder(tmp_path):
    (tmp_path / "logits").mkdir()
    with pytest.raises(StoreError, match=r"logits: no \*\.parquet logits files"):
        read_logits(tmp_path / "logits")


def test_corrupt_parquet_names_file(tmp_path):
    write_logits(make_frame(), tmp_path / "a.parquet")
    (tmp_path / "b.parquet").write_bytes(b"PAR1 this is not parquet at all")
    with pytest.raises(StoreError, match=r"b\.parquet: not a readable parquet file"):
        read_logits(tmp_path)


def test_wrong_schema_file_names_file(tmp_path):
    make_frame().drop(columns="group").to_parquet(tmp_path / "old.parquet", index=False)
    with pytest.raises(
        StoreError, match=r"old\.parquet: logits table lacks column\(s\) \['group'\]"
    ):
        read_logits(tmp_path)


def test_hand_edited_file_revalidated(tmp_path):
    frame = make_frame(n_choices=(3, 3))
    frame.loc[1, "logit_a"] = np.inf
    for column in LOGIT_COLUMNS[3:]:
        frame[column] = np.nan
    frame.to_parquet(tmp_path / "edited.parquet", index=False)
    with pytest.raises(StoreError, match=r"non-finite letter logit in row 1 \(id 'q1'\)"):
        read_logits(tmp_path / "edited.parquet")


def test_store_error_is_lorauq_error():
    assert issubclass(StoreError, LorauqError)


def test_failed_write_logits_keeps_old_table(tmp_path):
    target = tmp_path / "member-0.parquet"
    write_logits(make_frame(seed=1), target)
    before = target.read_bytes()
    bad = make_frame(seed=2)
    bad.loc[0, "logit_a"] = np.nan
    with pytest.raises(StoreError):
        write_logits(bad, target)
    assert target.read_bytes() == before
    assert files_in(tmp_path) == ["member-0.parquet"]
