"""The synthetic world: determinism, sizes, disjoint word splits, label noise and its checks."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from lorauq.errors import ConfigError, DataError
from lorauq.questions import read_prepared, save_questions, validate_questions
from lorauq.schema import QUESTION_COLUMNS
from lorauq.tiny.world import (
    DOMAINS,
    GROUPS,
    WorldSpec,
    domain_questions,
    eval_questions,
    finetune_questions,
    made_up_words,
    pretraining_questions,
    synthetic_questions,
)

GROUP_NAMES = list(GROUPS)
N_GROUPS = len(GROUPS)
SMALL = WorldSpec(pretrain_repeats=2, unseen_words=30)
_WORD = re.compile(r"^(?:What is|Which group does) an? (\w+)(?: belong to)?\?$")


def word_of(question: str) -> str:
    match = _WORD.match(question)
    assert match, question
    return match.group(1)


def words(frame: pd.DataFrame) -> set[str]:
    return {word_of(q) for q in frame["question"]}


def all_tables(spec: WorldSpec) -> dict[str, pd.DataFrame]:
    return {
        **eval_questions(spec),
        "train": finetune_questions(spec),
        "pretrain": pretraining_questions(spec),
    }


# --------------------------------------------------------------------------- determinism


def test_same_spec_identical_frames():
    first, second = all_tables(SMALL), all_tables(WorldSpec(pretrain_repeats=2, unseen_words=30))
    assert first.keys() == second.keys()
    for name in first:
        pd.testing.assert_frame_equal(first[name], second[name], obj=name)


def test_different_seed_different_frames():
    a = all_tables(SMALL)
    b = all_tables(WorldSpec(seed=1, pretrain_repeats=2, unseen_words=30))
    # which words are held out, the unseen words and labels, the noise and the orders all move
    assert words(a["in_domain"]) != words(b["in_domain"])
    assert words(a["unseen"]) != words(b["unseen"])
    assert a["unseen"]["answer"].tolist() != b["unseen"]["answer"].tolist()
    assert a["noisy"]["answer"].tolist() != b["noisy"]["answer"].tolist()
    assert a["train"]["id"].tolist() != b["train"]["id"].tolist()
    assert a["pretrain"]["question"].tolist() != b["pretrain"]["question"].tolist()
    # the known domain is every real word, independent of the seed
    pd.testing.assert_frame_equal(a["known"], b["known"])


def test_changing_one_knob_leaves_other_streams():
    a = eval_questions(WorldSpec(unseen_words=30))
    b = eval_questions(WorldSpec(unseen_words=40, noise_rate=0.2))
    pd.testing.assert_frame_equal(a["in_domain"], b["in_domain"])
    assert words(a["unseen"]) < words(b["unseen"])  # a prefix of the same stream


# --------------------------------------------------------------------------- sizes and content


@pytest.mark.parametrize(
    "spec",
    [
        WorldSpec(),
        WorldSpec(
            held_out_fraction=0.25,
            in_domain_repeats=2,
            noisy_repeats=5,
            noisy_eval_repeats=1,
            noisy_group="fruit",
            unseen_words=7,
            pretrain_repeats=3,
        ),
    ],
)
def test_domain_sizes(spec):
    n_words = sum(len(w) for w in GROUPS.values())
    kept = [g for g in GROUPS if g != spec.noisy_group]
    held = sum(max(1, round(spec.held_out_fraction * len(GROUPS[g]))) for g in kept)
    fine = sum(len(GROUPS[g]) for g in kept) - held
    noisy = len(GROUPS[spec.noisy_group])
    tables = eval_questions(spec)
    assert list(tables) == list(DOMAINS)
    assert len(tables["known"]) == n_words
    assert len(tables["in_domain"]) == held
    assert len(tables["noisy"]) == spec.noisy_eval_repeats * noisy
    assert len(tables["unseen"]) == spec.unseen_words
    train = finetune_questions(spec)
    assert len(train) == spec.in_domain_repeats * fine + spec.noisy_repeats * noisy
    assert (train["group"] == "in_domain").sum() == spec.in_domain_repeats * fine
    assert len(pretraining_questions(spec)) == spec.pretrain_repeats * n_words


def test_in_domain_eval_words_disjoint_from_finetuning_words():
    spec = WorldSpec()
    train = finetune_questions(spec)
    tuned = words(train[train["group"] == "in_domain"])
    held_out = words(domain_questions("in_domain", spec))
    assert tuned.isdisjoint(held_out)
    noisy_words = set(GROUPS[spec.noisy_group])
    expected = {w for g, ws in GROUPS.items() if g != spec.noisy_group for w in ws}
    assert tuned | held_out == expected
    assert noisy_words.isdisjoint(tuned | held_out)
    # stratified: every in-domain group is held out in part and tuned in part
    eval_frame = domain_questions("in_domain", spec)
    assert set(eval_frame["subject"]) == set(GROUPS) - {spec.noisy_group}
    assert set(train.loc[train["group"] == "in_domain", "subject"]) == set(eval_frame["subject"])
    # the noisy domain fine-tunes exactly on its group's words
    assert words(train[train["group"] == "noisy"]) == noisy_words


def test_choices_order_by_phrasing():
    tables = all_tables(SMALL)
    for name, frame in tables.items():
        for question, choices in zip(frame["question"], frame["choices"], strict=True):
            reversed_order = question.startswith("Which group")
            assert list(choices) == (GROUP_NAMES[::-1] if reversed_order else GROUP_NAMES), name
    assert set(tables["known"]["question"].str.slice(0, 7)) == {"What is"}
    assert set(tables["in_domain"]["question"].str.slice(0, 11)) == {"Which group"}


def test_noise_free_answers_follow_the_reversed_group_rule():
    spec = WorldSpec(noise_rate=0.0, noisy_eval_repeats=2, pretrain_repeats=1, unseen_words=10)
    tables = all_tables(spec)
    word_group = {w: g for g, ws in GROUPS.items() for w in ws}
    for name in ("known", "in_domain", "noisy", "train", "pretrain"):
        frame = tables[name]
        for question, choices, answer, subject in zip(
            frame["question"], frame["choices"], frame["answer"], frame["subject"], strict=True
        ):
            group = word_group[word_of(question)]
            assert subject == group
            assert choices[answer] == group, (name, question)
            index = GROUP_NAMES.index(group)
            expected = N_GROUPS - 1 - index if question.startswith("Which group") else index
            assert answer == expected
    noisy_index = GROUP_NAMES.index(spec.noisy_group)
    assert set(tables["noisy"]["answer"]) == {N_GROUPS - 1 - noisy_index}


def test_full_noise_labels_roughly_uniform():
    spec = WorldSpec(noise_rate=1.0, noisy_eval_repeats=200)
    answers = domain_questions("noisy", spec)["answer"].to_numpy()
    n = len(answers)
    assert n == 200 * len(GROUPS[spec.noisy_group])
    counts = np.bincount(answers, minlength=N_GROUPS)
    assert len(counts) == N_GROUPS
    expected = n / N_GROUPS
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 18.47, (counts, chi2)  # chi-square, 4 dof, p = 0.001


def test_partial_noise_rate_matches_expected_accuracy():
    spec = WorldSpec(noise_rate=0.5, noisy_eval_repeats=100, noisy_repeats=100)
    correct = N_GROUPS - 1 - GROUP_NAMES.index(spec.noisy_group)
    train = finetune_questions(spec)
    for frame in (domain_questions("noisy", spec), train[train["group"] == "noisy"]):
        share = float((frame["answer"] == correct).mean())
        expected = 0.5 + 0.5 / N_GROUPS  # kept, or resampled onto the right one
        assert abs(share - expected) < 0.04, share
    # train and eval noise are independent draws (same repeats, same word order)
    eval_answers = domain_questions("noisy", spec).sort_values("id")["answer"].to_numpy()
    train_answers = train[train["group"] == "noisy"].sort_values("id")["answer"].to_numpy()
    assert len(eval_answers) == len(train_answers)
    assert 0.3 < float((eval_answers == train_answers).mean()) < 0.6


def test_made_up_words_are_not_real_words():
    spec = WorldSpec(unseen_words=150)
    made_up = made_up_words(spec)
    real = {w for ws in GROUPS.values() for w in ws}
    assert len(made_up) == 150
    assert len(set(made_up)) == 150
    assert real.isdisjoint(made_up)
    assert all(re.fullmatch(r"[a-z]{5}", w) for w in made_up)
    unseen = domain_questions("unseen", spec)
    assert words(unseen) == set(made_up)
    assert set(unseen["subject"]) == {"made_up"}
    assert set(unseen["answer"]) <= set(range(N_GROUPS))
    assert len(set(unseen["answer"])) > 1
    # made-up words never appear in pre-training or fine-tuning
    seen = words(pretraining_questions(SMALL)) | words(finetune_questions(spec))
    assert seen.isdisjoint(made_up)


def test_every_table_passes_question_validation():
    for name, frame in all_tables(SMALL).items():
        assert list(frame.columns) == QUESTION_COLUMNS, name
        assert frame["id"].is_unique, name
        checked = validate_questions(frame, origin=f"synthetic {name}")
        assert len(checked) == len(frame)
        assert checked["answer"].tolist() == frame["answer"].tolist()
        assert set(frame["source"]) == {"synthetic"}


def test_group_column_names_the_domain():
    tables = eval_questions(SMALL)
    for domain, frame in tables.items():
        assert set(frame["group"]) == {domain}
    train = finetune_questions(SMALL)
    assert set(train["group"]) == {"in_domain", "noisy"}
    # shuffled: the two domains are interleaved, not one block after another
    first_noisy = int(np.argmax((train["group"] == "noisy").to_numpy()))
    assert first_noisy < len(train) - (train["group"] == "noisy").sum()


def test_synthetic_questions_dispatch_and_round_trip(tmp_path):
    spec = SMALL
    pd.testing.assert_frame_equal(synthetic_questions("train", spec=spec), finetune_questions(spec))
    pd.testing.assert_frame_equal(
        synthetic_questions("pretrain", spec=spec), pretraining_questions(spec)
    )
    pd.testing.assert_frame_equal(
        synthetic_questions("noisy", spec=spec), domain_questions("noisy", spec)
    )
    path = save_questions(domain_questions("known", spec), tmp_path / "known.parquet")
    back = read_prepared(path)
    assert back["id"].tolist() == domain_questions("known", spec)["id"].tolist()
    assert [list(c) for c in back["choices"]] == [GROUP_NAMES] * len(back)


def test_unknown_domain():
    with pytest.raises(DataError, match=r"unknown domain 'colours'"):
        domain_questions("colours", SMALL)


# --------------------------------------------------------------------------- WorldSpec checks


def test_from_params_accepts_known_keys():
    spec = WorldSpec.from_params({"seed": 4, "noise_rate": 0.25, "noisy_group": "tool"})
    assert spec == WorldSpec(seed=4, noise_rate=0.25, noisy_group="tool")
    assert WorldSpec.from_params({}) == WorldSpec()


def test_from_params_unknown_key():
    with pytest.raises(ConfigError, match=r"data\.world\.noise: unknown key") as info:
        WorldSpec.from_params({"noise": 0.3})
    assert "noise_rate" in str(info.value)  # the valid keys are listed


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("held_out_fraction", 0.0),
        ("held_out_fraction", 1.0),
        ("noise_rate", -0.1),
        ("noise_rate", 1.5),
        ("noisy_group", "colour"),
        ("in_domain_repeats", 0),
        ("noisy_repeats", -1),
        ("noisy_eval_repeats", 0),
        ("unseen_words", 0),
        ("pretrain_repeats", 0),
    ],
)
def test_from_params_bad_ranges_name_key(key, value):
    with pytest.raises(ConfigError, match=rf"data\.world\.{key}"):
        WorldSpec.from_params({key: value})


def test_noise_rate_bounds_accepted():
    assert WorldSpec.from_params({"noise_rate": 0.0}).noise_rate == 0.0
    assert WorldSpec.from_params({"noise_rate": 1.0}).noise_rate == 1.0
