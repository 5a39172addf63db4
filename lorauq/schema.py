"""The shapes every part of lorauq agrees on: answer letters, Question columns, logits columns.

They live here, in a module that imports nothing, so that loading data, building prompts,
writing the logits store and reading it back all use one definition, and no module has to
import another one only for a constant.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "KEY_COLUMNS",
    "LETTERS",
    "LOGITS_COLUMNS",
    "LOGIT_COLUMNS",
    "MAX_CHOICES",
    "MIN_CHOICES",
    "PRIOR_MEMBER",
    "QUESTION_COLUMNS",
    "READOUTS",
    "Readout",
]

#: Answer letters, in order: the paper's prompt labels its choices ``(a)``, ``(b)``, …
LETTERS = "abcdefghij"
#: A question has 2 to 10 choices: at least a real choice, at most one letter per choice.
MIN_CHOICES = 2
MAX_CHOICES = len(LETTERS)

#: The columns of a Question table, in order.
QUESTION_COLUMNS = ["id", "source", "subject", "group", "question", "choices", "answer"]

#: Letter-logit columns of the logits store: ``n_letters`` of them per row (its own choices,
#: or more when ``data.stored_letters`` asks for more), NaN past those.
LOGIT_COLUMNS = [f"logit_{letter}" for letter in LETTERS]
#: What identifies one row of the logits store.
KEY_COLUMNS = ["member", "epoch", "eval_set", "id"]
#: Every column of the logits store, in order.
LOGITS_COLUMNS = [
    "member",
    "epoch",
    "eval_set",
    "id",
    "subject",
    "group",
    "answer",
    "n_choices",
    "n_letters",
    *LOGIT_COLUMNS,
    "logsumexp_vocab",
]
#: The member id under which the prior (epoch 0, the base model) is stored once.
PRIOR_MEMBER = -1

#: How letter logits become class probabilities: the K letters renormalised, or the K letters
#: plus one "other" class holding the rest of the vocabulary's probability.
Readout = Literal["renormalized", "with_other"]
READOUTS: tuple[str, ...] = ("renormalized", "with_other")
