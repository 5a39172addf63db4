"""The offline default benchmark: a multiple-choice world whose uncertainty is known by construction.

No model or dataset hub is reachable on a fresh CPU machine, so the default experiment
generates its own data. Every question is about everyday *categories* (colours, animals, ...)
and is rendered with the paper's prompt template, so the tiny world runs exactly the code
path Mistral-7B does. Four evaluation domains make the aleatoric/epistemic decomposition
checkable:

``known``
    "Which one is a {category}?" — taught to the base model in pre-training and never
    fine-tuned: high accuracy before fine-tuning; whatever it loses afterwards is forgetting.
``in_domain``
    "Which one is not a {category}?" over the fine-tuning categories — the fine-tuning task.
    The base model has never seen "not" and answers it poorly; the members learn it.
``noisy``
    The same odd-one-out question over a disjoint set of categories whose *training and
    evaluation* labels are resampled uniformly with probability ``noise_rate``: the best a
    model can do is to be unsure, so expected (aleatoric) entropy must rise.
``unseen``
    "Which number is the largest?" — digits occur neither in pre-training nor in
    fine-tuning, so members disagree there after fine-tuning: mutual information (epistemic)
    must rise.

Everything is a pure function of the world's seed, so a rerun gives identical tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lorauq.errors import ConfigError, DataError

CATEGORIES: dict[str, tuple[str, ...]] = {
    "colour": (
        "red",
        "blue",
        "green",
        "yellow",
        "purple",
        "orange",
        "pink",
        "brown",
        "grey",
        "black",
        "white",
        "violet",
    ),
    "animal": (
        "dog",
        "cat",
        "horse",
        "tiger",
        "rabbit",
        "sheep",
        "goat",
        "lion",
        "mouse",
        "bear",
        "wolf",
        "fox",
    ),
    "fruit": (
        "apple",
        "banana",
        "cherry",
        "grape",
        "lemon",
        "mango",
        "peach",
        "pear",
        "plum",
        "melon",
        "kiwi",
        "lime",
    ),
    "tool": (
        "hammer",
        "saw",
        "drill",
        "wrench",
        "chisel",
        "spanner",
        "pliers",
        "shovel",
        "rake",
        "axe",
        "file",
        "clamp",
    ),
    "country": (
        "france",
        "spain",
        "italy",
        "japan",
        "china",
        "india",
        "brazil",
        "canada",
        "egypt",
        "kenya",
        "peru",
        "chile",
    ),
    "instrument": (
        "piano",
        "violin",
        "guitar",
        "flute",
        "drum",
        "harp",
        "cello",
        "trumpet",
        "oboe",
        "banjo",
        "tuba",
        "organ",
    ),
    "vehicle": (
        "car",
        "bus",
        "train",
        "truck",
        "bicycle",
        "boat",
        "plane",
        "tram",
        "taxi",
        "scooter",
        "ship",
        "van",
    ),
    "drink": (
        "tea",
        "coffee",
        "milk",
        "juice",
        "water",
        "soda",
        "cocoa",
        "wine",
        "beer",
        "cider",
        "lemonade",
        "smoothie",
    ),
}

DOMAINS = ("in_domain", "known", "unseen", "noisy")


@dataclass(frozen=True)
class WorldSpec:
    """The knobs of the synthetic world (the ``world`` section of a profile)."""

    seed: int = 0
    n_choices: int = 5
    train_size: int = 400
    eval_size: int = 200
    pretrain_size: int = 6000
    noise_rate: float = 0.5
    finetune_categories: tuple[str, ...] = ("colour", "animal", "fruit", "tool")
    noisy_categories: tuple[str, ...] = ("country", "instrument", "vehicle", "drink")
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> WorldSpec:
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ConfigError(f"world: unknown key(s) {unknown}; valid keys are {sorted(known)}")
        values = dict(params)
        for key in ("finetune_categories", "noisy_categories"):
            if key in values:
                values[key] = tuple(values[key])
        spec = cls(**values)
        spec.check()
        return spec

    def check(self) -> None:
        """Reject worlds that cannot be generated, naming the offending key."""
        if not 2 <= self.n_choices <= 10:
            raise ConfigError(f"world.n_choices must be in 2..10, got {self.n_choices}")
        if not 0.0 <= self.noise_rate <= 1.0:
            raise ConfigError(f"world.noise_rate must be in [0, 1], got {self.noise_rate}")
        for key in ("train_size", "eval_size", "pretrain_size"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"world.{key} must be positive, got {getattr(self, key)}")
        for key in ("finetune_categories", "noisy_categories"):
            names = getattr(self, key)
            bad = [n for n in names if n not in CATEGORIES]
            if bad or not names:
                raise ConfigError(
                    f"world.{key}: unknown or empty {bad or names}; choose from {sorted(CATEGORIES)}"
                )
        if set(self.finetune_categories) & set(self.noisy_categories):
            raise ConfigError(
                "world.finetune_categories and world.noisy_categories must be disjoint"
            )
        if self.n_choices - 1 > min(len(v) for v in CATEGORIES.values()):
            raise ConfigError(f"world.n_choices={self.n_choices} needs more words per category")


def _article(noun: str) -> str:
    return "an" if noun[0] in "aeiou" else "a"


def _membership_question(
    rng: np.random.Generator, category: str, n_choices: int
) -> tuple[str, list[str], int]:
    """ "Which one is a {category}?": one member among words of other categories."""
    others = [c for c in CATEGORIES if c != category]
    distractor_categories = rng.choice(
        others, size=n_choices - 1, replace=len(others) < n_choices - 1
    )
    choices = [str(rng.choice(CATEGORIES[c])) for c in distractor_categories]
    answer = int(rng.integers(n_choices))
    choices.insert(answer, str(rng.choice(CATEGORIES[category])))
    return f"Which one is {_article(category)} {category}?", choices, answer


def _odd_one_out_question(
    rng: np.random.Generator, category: str, n_choices: int
) -> tuple[str, list[str], int]:
    """ "Which one is not a {category}?": n-1 members and one word of another category."""
    members = [str(w) for w in rng.choice(CATEGORIES[category], size=n_choices - 1, replace=False)]
    other = str(rng.choice([c for c in CATEGORIES if c != category]))
    answer = int(rng.integers(n_choices))
    members.insert(answer, str(rng.choice(CATEGORIES[other])))
    return f"Which one is not {_article(category)} {category}?", members, answer


def _largest_number_question(
    rng: np.random.Generator, n_choices: int
) -> tuple[str, list[str], int]:
    """ "Which number is the largest?": digits never occur in pre-training or fine-tuning."""
    numbers = rng.choice(np.arange(10, 100), size=n_choices, replace=False)
    return "Which number is the largest?", [str(n) for n in numbers], int(np.argmax(numbers))


def _rows(
    domain: str, split: str, spec: WorldSpec, size: int, rng: np.random.Generator
) -> list[dict[str, Any]]:
    rows = []
    for i in range(size):
        if domain == "known":
            category = str(rng.choice(list(CATEGORIES)))
            question, choices, answer = _membership_question(rng, category, spec.n_choices)
        elif domain == "unseen":
            category = "number"
            question, choices, answer = _largest_number_question(rng, spec.n_choices)
        else:
            pool = spec.finetune_categories if domain == "in_domain" else spec.noisy_categories
            category = str(rng.choice(pool))
            question, choices, answer = _odd_one_out_question(rng, category, spec.n_choices)
            if domain == "noisy" and rng.random() < spec.noise_rate:
                answer = int(rng.integers(spec.n_choices))
        rows.append(
            {
                "id": f"{domain}-{split}-{i:05d}",
                "source": "synthetic",
                "subject": category,
                "group": domain,
                "question": question,
                "choices": choices,
                "answer": answer,
            }
        )
    return rows


def _rng(spec: WorldSpec, purpose: str) -> np.random.Generator:
    """An independent stream per (seed, purpose), so growing one split never shifts another."""
    key = [spec.seed, *(ord(ch) for ch in purpose)]
    return np.random.default_rng(key)


def domain_questions(domain: str, split: str, spec: WorldSpec) -> pd.DataFrame:
    """Questions of one domain; ``split`` is ``train`` (fine-tuning) or ``eval``."""
    if domain not in DOMAINS:
        raise DataError(f"synthetic: unknown domain {domain!r}; domains are {list(DOMAINS)}")
    size = spec.train_size if split == "train" else spec.eval_size
    return pd.DataFrame(_rows(domain, split, spec, size, _rng(spec, f"{domain}/{split}")))


def finetune_questions(spec: WorldSpec) -> pd.DataFrame:
    """The fine-tuning set: the in-domain task plus the label-noised domain, shuffled."""
    frame = pd.concat(
        [domain_questions("in_domain", "train", spec), domain_questions("noisy", "train", spec)],
        ignore_index=True,
    )
    order = _rng(spec, "finetune-order").permutation(len(frame))
    return frame.iloc[order].reset_index(drop=True)


def eval_questions(spec: WorldSpec) -> dict[str, pd.DataFrame]:
    """One evaluation table per domain."""
    return {domain: domain_questions(domain, "eval", spec) for domain in DOMAINS}


def pretraining_questions(spec: WorldSpec) -> pd.DataFrame:
    """The base model's pre-training corpus: membership questions with their answers."""
    return pd.DataFrame(
        _rows("known", "pretrain", spec, spec.pretrain_size, _rng(spec, "pretrain"))
    )


def synthetic_questions(
    split: str, path: str | Path | None = None, spec: WorldSpec | None = None
) -> pd.DataFrame:
    """``load_questions("synthetic", split)``: ``train``, ``pretrain`` or a domain name.

    With ``path`` the prepared parquet of that split is read instead (what the pipeline wrote).
    """
    if path is not None:
        from lorauq.data import read_prepared

        return read_prepared(Path(path))
    spec = spec or WorldSpec()
    if split == "train":
        return finetune_questions(spec)
    if split == "pretrain":
        return pretraining_questions(spec)
    return domain_questions(split, "eval", spec)
