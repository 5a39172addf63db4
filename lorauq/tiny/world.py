"""The offline default benchmark: a multiple-choice world whose uncertainty is known by construction.

No model or dataset hub is reachable on a fresh CPU machine, so the default experiment
generates its own data, rendered with the paper's prompt template so the tiny world runs
exactly the code path Mistral-7B does. Every question asks which *group* a word belongs to;
the answer choices are the groups themselves, in an order fixed by the question's phrasing.
That makes each question one recall step ("a tuba is an instrument"), which a two-layer
model learns in seconds — unlike a pointer over shuffled choices, which it does not.

Four evaluation domains make the aleatoric/epistemic decomposition checkable:

``known``
    "What is a {word}?" with the groups in their canonical order — taught in pre-training
    for every word, never fine-tuned. High accuracy before fine-tuning; whatever it loses
    afterwards is forgetting.
``in_domain``
    "Which group does a {word} belong to?" with the groups in *reversed* order — the
    fine-tuning task. The base model has never seen it and answers with the canonical
    letters (mostly wrong); fine-tuning on some words must generalise to the held-out
    words it is evaluated on, through what the base knows about them.
``noisy``
    The in-domain question about the words of one group (``noisy_group``, kept out of the
    in-domain words), whose fine-tuning *and evaluation* labels are resampled uniformly with
    probability ``noise_rate``: the best a model can do is to be unsure, so expected
    (aleatoric) entropy must rise.
``unseen``
    "What is a {word}?" about made-up words that occur neither in pre-training nor in
    fine-tuning, with arbitrary labels: members can only disagree there, so mutual
    information (epistemic) must rise after fine-tuning.

Everything is a pure function of the world's seed, so a rerun gives identical tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lorauq.errors import ConfigError, DataError

__all__ = [
    "DOMAINS",
    "GROUPS",
    "WorldSpec",
    "domain_questions",
    "eval_questions",
    "finetune_questions",
    "made_up_words",
    "pretraining_questions",
    "synthetic_questions",
]

GROUPS: dict[str, tuple[str, ...]] = {
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
        "zebra",
        "camel",
        "otter",
        "moose",
        "donkey",
        "badger",
        "beaver",
        "monkey",
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
        "papaya",
        "guava",
        "apricot",
        "fig",
        "date",
        "olive",
        "quince",
        "berry",
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
        "trowel",
        "mallet",
        "level",
        "crowbar",
        "scraper",
        "sander",
        "awl",
        "vise",
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
        "jeep",
        "canoe",
        "yacht",
        "tractor",
        "rocket",
        "sled",
        "wagon",
        "ferry",
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
        "lute",
        "viola",
        "sitar",
        "bugle",
        "cornet",
        "piccolo",
        "ukulele",
        "zither",
    ),
}

DOMAINS = ("in_domain", "known", "unseen", "noisy")

#: Each domain's question and whether its choices are the groups in reverse order.
_PHRASINGS: dict[str, tuple[str, bool]] = {
    "known": ("What is {article} {word}?", False),
    "unseen": ("What is {article} {word}?", False),
    "in_domain": ("Which group does {article} {word} belong to?", True),
    "noisy": ("Which group does {article} {word} belong to?", True),
}


@dataclass(frozen=True)
class WorldSpec:
    """The knobs of the synthetic world (``data.world`` of the tiny profile)."""

    seed: int = 0
    held_out_fraction: float = 0.4
    noise_rate: float = 0.5
    in_domain_repeats: int = 3
    noisy_repeats: int = 2
    noisy_eval_repeats: int = 3
    noisy_group: str = "instrument"
    unseen_words: int = 100
    pretrain_repeats: int = 40

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> WorldSpec:
        from lorauq.config import build_section

        spec = build_section(cls, params, "data.world")
        spec.check()
        return spec

    def check(self) -> None:
        """Reject worlds that cannot be generated, naming the offending key."""
        if not 0.0 < self.held_out_fraction < 1.0:
            raise ConfigError(
                f"data.world.held_out_fraction must be in (0, 1), got {self.held_out_fraction}"
            )
        if not 0.0 <= self.noise_rate <= 1.0:
            raise ConfigError(f"data.world.noise_rate must be in [0, 1], got {self.noise_rate}")
        if self.noisy_group not in GROUPS:
            raise ConfigError(
                f"data.world.noisy_group: {self.noisy_group!r} is not one of {list(GROUPS)}"
            )
        for key in (
            "in_domain_repeats",
            "noisy_repeats",
            "noisy_eval_repeats",
            "unseen_words",
            "pretrain_repeats",
        ):
            if getattr(self, key) <= 0:
                raise ConfigError(f"data.world.{key} must be positive, got {getattr(self, key)}")


def _article(noun: str) -> str:
    return "an" if noun[0] in "aeiou" else "a"


def _rng(spec: WorldSpec, purpose: str) -> np.random.Generator:
    """An independent stream per (seed, purpose), so changing one split never shifts another."""
    return np.random.default_rng([spec.seed, *(ord(ch) for ch in purpose)])


def _question(domain: str, word: str, group_index: int, uid: str) -> dict[str, Any]:
    phrasing, reverse = _PHRASINGS[domain]
    groups = list(GROUPS)
    choices = groups[::-1] if reverse else groups
    answer = len(groups) - 1 - group_index if reverse else group_index
    return {
        "id": uid,
        "source": "synthetic",
        "subject": groups[group_index] if domain != "unseen" else "made_up",
        "group": domain,
        "question": phrasing.format(article=_article(word), word=word),
        "choices": choices,
        "answer": answer,
    }


def _word_split(spec: WorldSpec) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(fine-tuning words, held-out words) for the in-domain task, stratified by group."""
    rng = _rng(spec, "word-split")
    train, held_out = [], []
    for index, (group, words) in enumerate(GROUPS.items()):
        if group == spec.noisy_group:
            continue
        order = rng.permutation(len(words))
        n_held = max(1, round(spec.held_out_fraction * len(words)))
        held_out += [(words[i], index) for i in order[:n_held]]
        train += [(words[i], index) for i in order[n_held:]]
    return train, held_out


def _all_words() -> list[tuple[str, int]]:
    return [(word, index) for index, words in enumerate(GROUPS.values()) for word in words]


def made_up_words(spec: WorldSpec) -> list[str]:
    """Pronounceable words that are no real word of the world (the unseen domain)."""
    rng = _rng(spec, "made-up")
    consonants, vowels = "bdfgklmnprstvz", "aeiou"
    known = {w for words in GROUPS.values() for w in words}
    out: list[str] = []
    while len(out) < spec.unseen_words:
        word = "".join(
            rng.choice(list(consonants)) + rng.choice(list(vowels)) for _ in range(2)
        ) + str(rng.choice(list(consonants)))
        if word not in known and word not in out:
            out.append(word)
    return out


def domain_questions(domain: str, spec: WorldSpec) -> pd.DataFrame:
    """The evaluation questions of one domain."""
    if domain not in DOMAINS:
        raise DataError(f"synthetic: unknown domain {domain!r}; domains are {list(DOMAINS)}")
    if domain == "known":
        rows = [_question("known", w, g, f"known-{i:04d}") for i, (w, g) in enumerate(_all_words())]
    elif domain == "in_domain":
        rows = [
            _question("in_domain", w, g, f"in_domain-{i:04d}")
            for i, (w, g) in enumerate(_word_split(spec)[1])
        ]
    elif domain == "noisy":
        rows = _noisy_rows(spec, "eval", repeats=spec.noisy_eval_repeats)
    else:
        rng = _rng(spec, "unseen-labels")
        rows = [
            _question("unseen", w, int(rng.integers(len(GROUPS))), f"unseen-{i:04d}")
            for i, w in enumerate(made_up_words(spec))
        ]
    return pd.DataFrame(rows)


def _noisy_rows(spec: WorldSpec, split: str, repeats: int) -> list[dict[str, Any]]:
    """Noisy-domain questions: each label resampled uniformly with probability ``noise_rate``."""
    rng = _rng(spec, f"noisy-{split}")
    rows = []
    group = list(GROUPS).index(spec.noisy_group)
    for r in range(repeats):
        for i, word in enumerate(GROUPS[spec.noisy_group]):
            row = _question("noisy", word, group, f"noisy-{split}-{r}-{i:04d}")
            if rng.random() < spec.noise_rate:
                row["answer"] = int(rng.integers(len(GROUPS)))
            rows.append(row)
    return rows


def finetune_questions(spec: WorldSpec) -> pd.DataFrame:
    """The fine-tuning set: the in-domain task on its training words plus the noisy domain."""
    words = _word_split(spec)[0]
    in_domain = [
        _question("in_domain", w, g, f"in_domain-train-{r}-{i:04d}")
        for r in range(spec.in_domain_repeats)
        for i, (w, g) in enumerate(words)
    ]
    frame = pd.DataFrame(in_domain + _noisy_rows(spec, "train", spec.noisy_repeats))
    order = _rng(spec, "finetune-order").permutation(len(frame))
    return frame.iloc[order].reset_index(drop=True)


def eval_questions(spec: WorldSpec) -> dict[str, pd.DataFrame]:
    """One evaluation table per domain."""
    return {domain: domain_questions(domain, spec) for domain in DOMAINS}


def pretraining_questions(spec: WorldSpec) -> pd.DataFrame:
    """The base model's pre-training corpus: every real word's membership question, repeated."""
    rows = [
        _question("known", w, g, f"pretrain-{r}-{i:04d}")
        for r in range(spec.pretrain_repeats)
        for i, (w, g) in enumerate(_all_words())
    ]
    order = _rng(spec, "pretrain-order").permutation(len(rows))
    return pd.DataFrame([rows[i] for i in order])


def synthetic_questions(split: str, spec: WorldSpec | None = None) -> pd.DataFrame:
    """``load_questions("synthetic", split)``: ``train``, ``pretrain`` or a domain name."""
    spec = spec or WorldSpec()
    if split == "train":
        return finetune_questions(spec)
    if split == "pretrain":
        return pretraining_questions(spec)
    return domain_questions(split, spec)
