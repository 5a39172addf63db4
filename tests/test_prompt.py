"""The paper's prompt, custom templates and answer-letter token ids on real and toy tokenizers.

The letter ids decide which logits are read as the answer, so they are checked on the real
tokenizers in the folder ``$LORAUQ_REALTOKENIZERS`` names (one tokenizer folder each:
Llama-2 SentencePiece, the Mistral family; SmolLM2 byte-level BPE; optional, skipped when
unset) and on toy tokenizers built to break each assumption.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from lorauq.errors import ConfigError, DataError, ModelError
from lorauq.prompt import encode_prompts, format_prompt, letter_token_ids, template_parts

REALTOKENIZERS = os.environ.get("LORAUQ_REALTOKENIZERS")

ROW5 = {
    "question": "Where would you put a plate after washing it?",
    "choices": ["cupboard", "table", "sink", "dishwasher", "floor"],
    "answer": 0,
}
ROW4 = pd.Series(
    {
        "question": "What is 2 + 2?",
        "choices": np.array(["3", "4", "5", "22"], dtype=object),
        "answer": 1,
    }
)


# --------------------------------------------------------------------------- prompt text


def test_paper_prompt_five_choices():
    assert format_prompt(ROW5) == (
        "Q: Where would you put a plate after washing it?\n"
        "Answer Choices:\n"
        "(a) cupboard\n(b) table\n(c) sink\n(d) dishwasher\n(e) floor\n"
        "A: ("
    )


def test_paper_prompt_four_choices_from_a_series_with_answer():
    prompt = "Q: What is 2 + 2?\nAnswer Choices:\n(a) 3\n(b) 4\n(c) 5\n(d) 22\nA: ("
    assert format_prompt(ROW4) == prompt
    assert format_prompt(ROW4, with_answer=True) == prompt + "b)."
    assert format_prompt(ROW5, "paper", with_answer=True).endswith("\nA: (a).")
    assert template_parts("paper") == ("Q: {question}\nAnswer Choices:\n{choices}\nA: (", ").")


def test_unlabelled_question_has_no_training_text():
    with pytest.raises(DataError, match="answer -1"):
        format_prompt({**ROW5, "answer": -1}, with_answer=True)


def test_custom_template():
    template = "Question: {question}\nOptions:\n{choices}\nAnswer: ({answer})"
    row = {"question": "Pick {choices} literally", "choices": ["x", "y"], "answer": 1}
    assert format_prompt(row, template) == (
        "Question: Pick {choices} literally\nOptions:\n(a) x\n(b) y\nAnswer: ("
    )
    assert format_prompt(row, template, with_answer=True).endswith("Answer: (b)")
    plain = "{question}\n{choices}\nAnswer: "
    assert format_prompt(row, plain, with_answer=True).endswith("(b) y\nAnswer: b")


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("paper2", "known name"),
        ("Q: {question}\nA: (", "{choices}"),
        ("{answer} {question} {choices}", "must come after"),
        ("{question} {choices} {answer} {answer}", "at most once"),
    ],
)
def test_bad_templates_are_config_errors(template, message):
    with pytest.raises(ConfigError, match=message):
        format_prompt(ROW5, template)


# --------------------------------------------------------------------------- toy tokenizers


def word_level(words: list[str]) -> Tokenizer:
    vocab = {"[UNK]": 0, **{word: i + 1 for i, word in enumerate(words)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return tokenizer


def char_bpe(merges: list[tuple[str, str]]) -> Tokenizer:
    """Characters of the paper prompt as tokens, plus the given merges."""
    text = format_prompt({"question": "Which one?", "choices": [f"option {i}" for i in range(9)]})
    chars = sorted(set(text + "abcdefghij).?"))
    vocab = {c: i for i, c in enumerate(chars)}
    for left, right in merges:
        vocab[left + right] = len(vocab)
    return Tokenizer(models.BPE(vocab, merges))


def test_word_level_tokenizer_letters():
    from transformers import PreTrainedTokenizerFast

    raw = word_level(["A", ":", "(", ").", "a", "b", "c", "d"])
    wrapped = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]")
    assert letter_token_ids(raw, 4) == [5, 6, 7, 8]
    assert letter_token_ids(wrapped, 4) == [5, 6, 7, 8]


def test_letter_missing_from_vocabulary_is_a_model_error():
    from transformers import PreTrainedTokenizerFast

    raw = word_level(["A", ":", "(", ").", "a", "b", "d", "e"])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, unk_token="[UNK]", name_or_path="tiny-no-c"
    )
    assert letter_token_ids(tokenizer, 2) == [5, 6]
    with pytest.raises(ModelError) as exc:
        letter_token_ids(tokenizer, 5)
    assert "'c'" in str(exc.value) and "tiny-no-c" in str(exc.value)


def test_letter_merging_with_the_paren_is_a_model_error():
    tokenizer = char_bpe([("(", "c")])
    assert len(letter_token_ids(tokenizer, 2)) == 2
    with pytest.raises(ModelError, match=r"'c'.*merges with them"):
        letter_token_ids(tokenizer, 3)


def test_letter_merging_with_the_closing_text_is_a_model_error():
    tokenizer = char_bpe([("b", ")")])
    with pytest.raises(ModelError, match=r"'b'.*merges with the text after it"):
        letter_token_ids(tokenizer, 2)
    assert len(letter_token_ids(tokenizer, 2, template="{question}\n{choices}\nA: (")) == 2


def test_n_choices_out_of_range():
    with pytest.raises(ConfigError):
        letter_token_ids(word_level(["a"]), 11)


# --------------------------------------------------------------------------- real tokenizers


#: Ids after "A: (", pinned: a change means the tokenizer files or their loading changed.
KNOWN_IDS = {
    "llama2-sp-32k": [29874, 29890, 29883, 29881, 29872],
    "smollm2": [81, 82, 83, 84, 85],
}


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(KNOWN_IDS))
def test_real_tokenizer_letters_are_single_distinct_round_tripping_tokens(name):
    if not REALTOKENIZERS:
        pytest.skip("set LORAUQ_REALTOKENIZERS to a folder of real tokenizers to run this")
    folder = Path(REALTOKENIZERS) / name
    if not folder.is_dir():
        pytest.skip(f"real tokenizer folder not found at {folder}")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = letter_token_ids(tokenizer, 5)
    assert ids == KNOWN_IDS[name]
    assert len(set(ids)) == 5
    assert [tokenizer.decode([i]) for i in ids] == list("abcde")
    assert letter_token_ids(tokenizer, 4) == ids[:4]
    assert len(set(letter_token_ids(tokenizer, 10))) == 10
    # The letter is the next token after each real prompt, in inference and in training.
    frame = pd.DataFrame([ROW5, ROW4.to_dict()])
    prompts = encode_prompts(tokenizer, frame)
    trained = encode_prompts(tokenizer, frame, with_answer=True)
    for prompt, full, answer in zip(prompts, trained, frame["answer"], strict=True):
        assert full[: len(prompt)] == prompt
        assert full[len(prompt)] == ids[answer]
    # Special tokens only go in front, so the last id is the answer position.
    plain = tokenizer.encode(format_prompt(ROW5), add_special_tokens=False)
    assert prompts[0][len(prompts[0]) - len(plain) :] == plain
