"""The prompt template and the answer-letter token ids of a tokenizer.

The paper's prompt (docs/paper.md) ends in ``A: (`` and the model's logits for the next
token are read as the answer. Which token id "a" is depends on the tokenizer *and* on what
precedes it (SentencePiece has ``a`` and ``▁a``; "(" may merge with a letter; Mistral encodes
" A" as two tokens), so letter ids are derived here by encoding a real prompt with and without
the letter, never hard-coded, and every assumption the read-out relies on is checked.

Templates are params (:func:`resolve_template` checks them when ``lorauq.config`` loads them):
``"paper"`` or a string with ``{question}`` and ``{choices}`` placeholders, where an optional
``{answer}`` marks the gold letter and the text after it follows the letter in training (the
paper: ``A: ({answer}).``). The prompt is everything before ``{answer}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from lorauq.errors import ConfigError, DataError, ModelError
from lorauq.schema import LETTERS

__all__ = [
    "PAPER_TEMPLATE",
    "TEMPLATES",
    "encode_prompts",
    "format_choices",
    "format_prompt",
    "letter_token_ids",
    "resolve_template",
    "template_parts",
]

_PLACEHOLDER = re.compile(r"\{(question|choices|answer)\}")

#: The paper's template, exactly: ``Q: …\nAnswer Choices:\n(a) …\nA: ({letter}).``
PAPER_TEMPLATE = "Q: {question}\nAnswer Choices:\n{choices}\nA: ({answer})."
#: Named templates ``data.template`` may give instead of a template string.
TEMPLATES = {"paper": PAPER_TEMPLATE}


def resolve_template(template: str) -> str:
    """The template text of a name in :data:`TEMPLATES` or of a custom template string.

    A template needs ``{question}`` and ``{choices}``; an optional ``{answer}`` (at most once,
    after both) marks where the gold letter goes, and the text after it follows the letter in
    training. Anything else is a ConfigError, raised when params are loaded.
    """
    if not isinstance(template, str):
        raise ConfigError(f"prompt template must be a string, got {type(template).__name__}")
    text = TEMPLATES.get(template, template)
    missing = [p for p in ("{question}", "{choices}") if p not in text]
    if missing:
        raise ConfigError(
            f"prompt template {template!r} is not a known name ({', '.join(TEMPLATES)}) and lacks "
            f"placeholder(s) {missing}; a template needs {{question}} and {{choices}} and may "
            "mark the letter with {answer}"
        )
    if text.count("{answer}") > 1:
        raise ConfigError(f"prompt template {template!r}: {{answer}} may appear at most once")
    answer_at = text.find("{answer}")
    if answer_at >= 0 and answer_at < max(text.find("{question}"), text.find("{choices}")):
        raise ConfigError(
            f"prompt template {template!r}: {{answer}} must come after {{question}} and {{choices}}"
        )
    return text


def template_parts(template: str = "paper") -> tuple[str, str]:
    """(prompt part, text after the letter): ``("Q: …A: (", ").")`` for the paper."""
    text = resolve_template(template)
    before, _, after = text.partition("{answer}")
    return before, after


def _choices_of(row: Mapping[str, Any] | pd.Series) -> list[str]:
    choices = row["choices"]
    if isinstance(choices, str) or not isinstance(choices, Iterable):
        raise DataError(f"choices must be a list of strings, got {type(choices).__name__}")
    choices = [str(choice) for choice in choices]
    if not 1 <= len(choices) <= len(LETTERS):
        raise DataError(f"a prompt takes 1-{len(LETTERS)} choices, got {len(choices)}")
    return choices


def format_choices(choices: Sequence[str]) -> str:
    """The ``(a) text`` lines of the paper's prompt, one per choice."""
    return "\n".join(f"({LETTERS[i]}) {choice}" for i, choice in enumerate(choices))


def format_prompt(
    row: Mapping[str, Any] | pd.Series, template: str = "paper", with_answer: bool = False
) -> str:
    """The prompt text of one question, ending where the answer letter is predicted.

    With ``with_answer`` the gold letter and the template's closing text follow (the training
    text, e.g. ``…A: (b).``). Substitution is one pass, so braces or placeholder-like text in
    a question are kept as they are.
    """
    before, after = template_parts(template)
    choices = _choices_of(row)
    values = {"question": str(row["question"]), "choices": format_choices(choices)}
    text = _PLACEHOLDER.sub(lambda match: values[match.group(1)], before)
    if not with_answer:
        return text
    answer = row["answer"]
    if isinstance(answer, bool) or not 0 <= int(answer) < len(choices):
        raise DataError(
            f"question {row.get('id', '?')!r}: answer {answer!r} is not a choice index "
            f"0..{len(choices) - 1}; an unlabelled question has no training text"
        )
    return text + LETTERS[int(answer)] + after


def _encode(tokenizer: Any, text: str, add_special_tokens: bool) -> list[int]:
    """Token ids from a transformers tokenizer or a raw ``tokenizers.Tokenizer``."""
    encoded = tokenizer.encode(text, add_special_tokens=add_special_tokens)
    return list(getattr(encoded, "ids", encoded))


def _tokenizer_name(tokenizer: Any) -> str:
    return getattr(tokenizer, "name_or_path", None) or type(tokenizer).__name__


def _decode(tokenizer: Any, token_id: int) -> str:
    return tokenizer.decode([token_id])


def letter_token_ids(tokenizer: Any, n_choices: int, template: str = "paper") -> list[int]:
    """The token id of each answer letter ``a``… after the template's answer prefix.

    Each id is found by encoding a prompt of this template with and without the letter
    appended (no special tokens) and taking the one new token. Raises ModelError, naming
    the letter and the tokenizer, if a letter is not exactly one token there, changes the
    prompt's own tokens (merges with "("), merges with the text after it (training would then
    target another token), is the unknown token, does not decode back to the letter, or if two
    letters share an id.
    """
    if not 1 <= n_choices <= len(LETTERS):
        raise ConfigError(f"n_choices must be 1..{len(LETTERS)}, got {n_choices}")
    _, after = template_parts(template)
    row = {"question": "Which one?", "choices": [f"option {i + 1}" for i in range(n_choices)]}
    prompt = format_prompt(row, template)
    context = _encode(tokenizer, prompt, add_special_tokens=False)
    name = _tokenizer_name(tokenizer)
    unk = getattr(tokenizer, "unk_token_id", None)
    ids: list[int] = []
    for letter in LETTERS[:n_choices]:
        where = f"tokenizer {name!r}: answer letter {letter!r} after {prompt[-8:]!r}"
        with_letter = _encode(tokenizer, prompt + letter, add_special_tokens=False)
        if with_letter[: len(context)] != context:
            raise ModelError(f"{where} changes the prompt's own tokens (it merges with them)")
        new = with_letter[len(context) :]
        if len(new) != 1:
            raise ModelError(f"{where} is {len(new)} tokens {new}, not exactly one")
        token = new[0]
        if unk is not None and token == unk:
            raise ModelError(f"{where} is the unknown token {unk}")
        if _decode(tokenizer, token).strip() != letter:
            raise ModelError(f"{where}: token {token} decodes to {_decode(tokenizer, token)!r}")
        if after:
            full = _encode(tokenizer, prompt + letter + after, add_special_tokens=False)
            if full[: len(with_letter)] != with_letter:
                raise ModelError(f"{where} merges with the text after it ({after!r})")
        ids.append(token)
    if len(set(ids)) != len(ids):
        raise ModelError(f"tokenizer {name!r}: answer letters share token ids {ids}")
    return ids


def encode_prompts(
    tokenizer: Any,
    rows: pd.DataFrame | Iterable[Mapping[str, Any]],
    template: str = "paper",
    with_answer: bool = False,
) -> list[list[int]]:
    """Token ids of each question's prompt, with special tokens (BOS) as the tokenizer adds them.

    The last id is the position whose next-token logits are the answer (without
    ``with_answer``): the paper feeds the prompt with BOS, no chat template.
    """
    records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else rows
    texts = [format_prompt(row, template, with_answer) for row in records]
    encoded = [_encode(tokenizer, text, add_special_tokens=True) for text in texts]
    if encoded:
        plain = _encode(tokenizer, texts[0], add_special_tokens=False)
        if encoded[0][len(encoded[0]) - len(plain) :] != plain:
            raise ModelError(
                f"tokenizer {_tokenizer_name(tokenizer)!r} adds special tokens after the text "
                "(e.g. EOS), so the last token is not the answer position"
            )
    return encoded
