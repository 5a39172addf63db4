"""The bad-input catalogue: every row of ``docs/bad-inputs.md`` is one case here, and back.

Each case feeds lorauq one bad input (a file, a param, a model folder, a stored artefact)
and asserts the error class (a ``lorauq.errors`` subclass, never a bare library error) and
a message excerpt naming the file and row, the dotted param key, or the path. An excerpt
``x … y`` means ``x`` and later ``y``. The doc's table and ``CASES`` must list the same ids
with the same class and excerpt, so neither can drift from the other.
"""

from __future__ import annotations

import dataclasses
import errno
import importlib
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tinyworld as tw
import yaml

from lorauq import errors
from lorauq.config import LoraParams, load_params
from lorauq.data import load_questions
from lorauq.errors import ConfigError, DataError, LorauqError, ModelError, StoreError
from lorauq.gguf import source_reference
from lorauq.infer import evaluate_member, evaluate_prior
from lorauq.lora import attach_lora
from lorauq.model import load_base, load_base_model, load_tokenizer
from lorauq.prompt import format_prompt, letter_token_ids
from lorauq.questions import read_prepared
from lorauq.schema import LOGIT_COLUMNS
from lorauq.store import read_logits, write_logits
from lorauq.tiny.model import build_tiny_model
from lorauq.uncertainty import accuracy, letter_probs

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "bad-inputs.md"
PARAMS = ROOT / "params.yaml"


# --------------------------------------------------------------------------- the case table


@dataclass
class Ctx:
    """What a case may use: a fresh folder, monkeypatch, the tiny world and a trained member
    (made on first use), and checks to run after the error was raised (e.g. "the old file is
    intact")."""

    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    request: pytest.FixtureRequest
    after: list[Callable[[], None]] = field(default_factory=list)

    @property
    def world(self) -> dict[str, Any]:
        return self.request.getfixturevalue("tiny")

    @property
    def member(self) -> Path:
        """The session's one-epoch member: it trains, so a case using it is ``slow``."""
        return self.request.getfixturevalue("tiny_member")


@dataclass(frozen=True)
class Case:
    error: type[LorauqError]
    excerpt: str
    run: Callable[[Ctx], Any]
    slow: bool  # it trains, or uses the trained member (tests/slow_policy.py checks it)


CASES: dict[str, Case] = {}


def case(case_id: str, error: type[LorauqError], excerpt: str, *, slow: bool = False):
    """Register ``run`` as catalogue row ``case_id``; it must raise ``error`` with ``excerpt``."""

    def register(run: Callable[[Ctx], Any]) -> Callable[[Ctx], Any]:
        assert case_id not in CASES, case_id
        CASES[case_id] = Case(error, excerpt, run, slow)
        return run

    return register


# --------------------------------------------------------------------------- helpers

GOOD = {"question": "Which is a colour?", "choices": ["red", "dog", "run"], "answer": 0}


def jsonl(ctx: Ctx, *rows: Any, name: str = "q.jsonl") -> Path:
    """A jsonl file of ``rows`` (dicts are dumped; strings are written as they are)."""
    path = ctx.tmp / name
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def load_jsonl(ctx: Ctx, *rows: Any, **kwargs: Any):
    return load_questions("jsonl", "train", path=jsonl(ctx, *rows), **kwargs)


def load_csv(ctx: Ctx, text: str):
    path = ctx.tmp / "q.csv"
    path.write_text(text, encoding="utf-8")
    return load_questions("csv", "train", path=path)


def revision_not_found(repo: str, revision: str) -> Exception:
    """huggingface_hub's error for a revision a hub repository does not have, as it raises it
    (an HTTP 404 on the repository's revision URL)."""
    from huggingface_hub import errors as hub_errors

    httpx = importlib.import_module(hub_errors.Response.__module__.split(".")[0])
    url = f"https://huggingface.co/api/{repo}/revision/{revision}"
    response = httpx.Response(404, request=httpx.Request("GET", url))
    return hub_errors.RevisionNotFoundError(
        f"404 Client Error. Revision Not Found for url: {url}.", response=response
    )


def params(**overrides: Any):
    return load_params(PARAMS, overrides)


def logits_frame(n: int = 3) -> pd.DataFrame:
    """A valid logits table of ``n`` 3-choice questions (member 0, epoch 1)."""
    frame = pd.DataFrame(
        {
            "member": 0,
            "epoch": 1,
            "eval_set": "in_domain",
            "id": [f"q{i}" for i in range(n)],
            "subject": "s",
            "group": "g",
            "answer": 0,
            "n_choices": 3,
            "logsumexp_vocab": 5.0,
        }
    )
    frame[LOGIT_COLUMNS[:3]] = np.arange(3 * n, dtype=np.float32).reshape(n, 3)
    return frame


def char_tokenizer(merges: list[tuple[str, str]], drop: str = ""):
    """A character BPE over the paper prompt's characters (minus ``drop``), plus ``merges``."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    text = format_prompt({"question": "Which one?", "choices": [f"option {i}" for i in range(9)]})
    chars = sorted(set(text + "abcdefghij).?") - set(drop))
    vocab = {"[UNK]": 0, **{c: i + 1 for i, c in enumerate(chars)}}
    for left, right in merges:
        vocab[left + right] = len(vocab)
    raw = Tokenizer(models.BPE(vocab, merges, unk_token="[UNK]"))
    return PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]", name_or_path="toy")


def member_copy(ctx: Ctx) -> Path:
    """A private copy of the tiny world's one-epoch member, for a case to damage."""
    target = ctx.tmp / "member-0"
    shutil.copytree(ctx.member, target)
    return target


def infer_member(ctx: Ctx, member_dir: Path, base_dir: Path | None = None) -> Path:
    base_dir = base_dir or ctx.world["base_dir"]
    return evaluate_member(
        load_base_model(str(base_dir), tw.BASE),
        ctx.world["tokenizer"],
        {"in_domain": tw.eval_set()},
        member_dir,
        ctx.tmp / "member-0.parquet",
        member=0,
        infer=tw.INFER,
        progress=False,
    )


def truncate(path: Path, keep: int = 100) -> None:
    path.write_bytes(path.read_bytes()[:keep])


# --------------------------------------------------------------------------- data


@case("jsonl-malformed-line", DataError, "q.jsonl: line 2: malformed JSON")
def _(ctx: Ctx):
    load_jsonl(ctx, GOOD, '{"question": "cut off", "choices": ["a", "b"')


@case("jsonl-missing-field", DataError, "q.jsonl: line 1: missing key(s) ['answer']")
def _(ctx: Ctx):
    load_jsonl(ctx, {k: v for k, v in GOOD.items() if k != "answer"})


@case("answer-out-of-range", DataError, "q.jsonl: line 2: answer 3 outside -1..2 for 3 choices")
def _(ctx: Ctx):
    load_jsonl(ctx, GOOD, {**GOOD, "answer": 3})


@case(
    "answer-neither-index-nor-letter",
    DataError,
    "q.csv: row 1 (line 2): answer 'maybe' is neither a 0-based index nor a letter A-B",
)
def _(ctx: Ctx):
    load_csv(ctx, "question,choice0,choice1,answer\nPick one,x,y,maybe\n")


@case(
    "answer-letter-outside-choices",
    DataError,
    "q.csv: row 2 (line 3): answer 'D' is not one of the row's letters A-C (3 choices)",
)
def _(ctx: Ctx):
    load_csv(ctx, "question,choice0,choice1,choice2,answer\nPick one,x,y,z,B\nPick two,x,y,z,D\n")


@case(
    "csv-unclosed-quote",
    DataError,
    "q.csv: row 2 (line 3): 2 fields, header has 5 (a field runs over several lines",
)
def _(ctx: Ctx):
    load_csv(
        ctx,
        'question,choice0,choice1,choice2,answer\nPick one,x,y,z,B\nPick two,"x,y,z,0\n'
        "Pick three,x,y,z,1\n",
    )


@case("duplicate-ids", DataError, "q.jsonl: line 2: duplicate id 'q1' (first at … line 1)")
def _(ctx: Ctx):
    load_jsonl(ctx, {**GOOD, "id": "q1"}, {**GOOD, "id": "q1"})


@case("empty-question", DataError, "q.jsonl: line 1: question must be a non-empty string")
def _(ctx: Ctx):
    load_jsonl(ctx, {**GOOD, "question": "   "})


@case("too-few-choices", DataError, "q.jsonl: line 1: needs 2-10 choices, got 1")
def _(ctx: Ctx):
    load_jsonl(ctx, {**GOOD, "choices": ["only"]})


@case("too-many-choices", DataError, "q.jsonl: line 1: needs 2-10 choices, got 11")
def _(ctx: Ctx):
    load_jsonl(ctx, {**GOOD, "choices": [f"c{i}" for i in range(11)]})


@case("undecodable-bytes", DataError, "q.jsonl: line 2: not UTF-8 text (undecodable byte 0xe9")
def _(ctx: Ctx):
    path = ctx.tmp / "q.jsonl"
    line = b'{"question": "caf\xe9?", "choices": ["a", "b"], "answer": 0}\n'
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + line)
    load_questions("jsonl", "train", path=path)


@case("csv-wrong-header", DataError, "q.csv: wrong CSV header ['question', 'a', 'b', 'answer']")
def _(ctx: Ctx):
    load_csv(ctx, "question,a,b,answer\nPick one,x,y,0\n")


@case("csv-ragged-row", DataError, "q.csv: row 2 (line 3): 3 fields, header has 4")
def _(ctx: Ctx):
    load_csv(ctx, "question,choice0,choice1,answer\nPick one,x,y,0\nPick two,x,1\n")


@case(
    "source-path-untracked",
    ConfigError,
    "tiny.data.eval.mine.path: … is outside data/sources/, the folder the prepare stage depends on",
)
def _(ctx: Ctx):
    from lorauq.stages.prepare import check_tracked_paths

    spec = {"source": "csv", "split": "test", "path": str(ctx.tmp / "mine.csv")}
    check_tracked_paths(params(**{"tiny.data.eval.mine": spec}), ROOT)


@case(
    "mmlu-answer-not-a-letter",
    DataError,
    "anatomy_test.csv: row 2 (line 2): answer 'E' is not a letter A-D",
)
def _(ctx: Ctx):
    folder = ctx.tmp / "mmlu" / "test"
    folder.mkdir(parents=True)
    (folder / "anatomy_test.csv").write_text(
        "What is it?,w,x,y,z,A\nAnd this?,w,x,y,z,E\n", encoding="utf-8"
    )
    load_questions("mmlu", "test", path=ctx.tmp / "mmlu", subjects=["anatomy"])


@case("source-file-missing", DataError, "nowhere.jsonl: no such file")
def _(ctx: Ctx):
    load_questions("jsonl", "train", path=ctx.tmp / "nowhere.jsonl")


@case("source-split-missing", DataError, "boolq has no split 'test'; its splits: train, validation")
def _(ctx: Ctx):
    load_questions("boolq", "test", revision="35b264d03638db9f4ce671b711558bf7ff0f80d5")


@case(
    "hub-dataset-revision-missing",
    DataError,
    "allenai/winogrande (config winogrande_s): revision 'v9.9' does not exist on the Hugging Face hub",
)
def _(ctx: Ctx):
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    def load_dataset(path, name=None, *, split, revision=None):
        # what datasets raises (datasets/load.py) when the hub answers RevisionNotFoundError
        raise DatasetNotFoundError(
            f"Revision '{revision}' doesn't exist for dataset '{path}' on the Hub."
        ) from revision_not_found(f"datasets/{path}", revision)

    ctx.monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    load_questions("winogrande_s", "train", revision="v9.9")


@case(
    "eval-set-empty-after-filter",
    DataError,
    "jsonl split 'train' from … q.jsonl: no questions (group=None, subjects=['physics'])",
)
def _(ctx: Ctx):
    load_jsonl(ctx, {**GOOD, "subject": "biology"}, subjects=["physics"])


@case("eval-set-empty-at-inference", DataError, "prior epoch 0 empty: the evaluation set is empty")
def _(ctx: Ctx):
    evaluate_prior(
        load_base_model(str(ctx.world["base_dir"]), tw.BASE),
        ctx.world["tokenizer"],
        {"empty": tw.eval_set().iloc[:0]},
        ctx.tmp / "prior.parquet",
        progress=False,
    )


@case("prepared-table-corrupt", DataError, "train.parquet: not a readable parquet file")
def _(ctx: Ctx):
    path = ctx.tmp / "train.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    read_prepared(path)


# --------------------------------------------------------------------------- params


@case("param-unknown-key", ConfigError, "tiny.train.epoch: unknown key (did you mean 'epochs'?)")
def _(ctx: Ctx):
    params(**{"train.epoch": 3})


@case("param-unknown-section", ConfigError, "tiny.trian: unknown section (did you mean 'train'?)")
def _(ctx: Ctx):
    params(**{"tiny.trian.lr": 0.1})


def _params_file_with(ctx: Ctx, extra: str) -> Path:
    path = ctx.tmp / "params.yaml"
    path.write_text(PARAMS.read_text(encoding="utf-8") + extra, encoding="utf-8")
    return path


@case(
    "param-top-level-typo",
    ConfigError,
    "lroa_rank_typo: unknown top-level key in … params.yaml",
)
def _(ctx: Ctx):
    load_params(_params_file_with(ctx, "lroa_rank_typo: 8\n"))


@case(
    "param-top-level-beside-members",
    ConfigError,
    "member: unknown top-level key in … params.yaml (did you mean 'members'?)",
)
def _(ctx: Ctx):
    load_params(_params_file_with(ctx, "member: [0, 1]\n"))


@case("param-wrong-type", ConfigError, "tiny.train.batch_size: expected int, got str 'eight'")
def _(ctx: Ctx):
    params(**{"train.batch_size": "eight"})


@case("epochs-zero", ConfigError, "tiny.train.epochs must be positive, got 0")
def _(ctx: Ctx):
    params(**{"train.epochs": 0})


@case("epochs-negative", ConfigError, "tiny.train.epochs must be positive, got -2")
def _(ctx: Ctx):
    params(**{"train.epochs": -2})


@case("steps-zero", ConfigError, "tiny.train.steps must be positive, got 0")
def _(ctx: Ctx):
    params(**{"train.steps": 0, "train.epochs": None})


@case(
    "steps-and-epochs",
    ConfigError,
    "tiny.train.steps (50) and tiny.train.epochs (8) are both set; train by one",
)
def _(ctx: Ctx):
    params(**{"train.steps": 50})


@case(
    "checkpoint-steps-past-the-end",
    ConfigError,
    "tiny.train.checkpoint_steps [10, 60]: increasing steps in 1..train.steps (50)",
)
def _(ctx: Ctx):
    params(**{"train.steps": 50, "train.epochs": None, "train.checkpoint_steps": [10, 60]})


@case("members-empty", ConfigError, "members: the member list is empty")
def _(ctx: Ctx):
    params(members=[])


@case(
    "template-without-placeholder",
    ConfigError,
    "tiny.data.template: prompt template … lacks placeholder(s) ['{choices}']",
)
def _(ctx: Ctx):
    params(**{"data.template": "Q: {question}\nA: ("})


@case("eval-limit-zero", ConfigError, "tiny.data.eval.in_domain.limit must be positive")
def _(ctx: Ctx):
    params(**{"data.eval.in_domain.limit": 0})


@case("params-not-yaml", ConfigError, "bad.yaml: not valid YAML")
def _(ctx: Ctx):
    path = ctx.tmp / "bad.yaml"
    path.write_text("profile: tiny\ntiny: [unclosed\n", encoding="utf-8")
    load_params(path)


# --------------------------------------------------------------------------- models


@case("base-folder-missing", ModelError, "no-such-base: base model folder not found")
def _(ctx: Ctx):
    load_base_model(str(ctx.tmp / "no-such-base"), tw.BASE)


@case("base-folder-not-a-model", ModelError, "empty-folder: not a model folder (no config.json)")
def _(ctx: Ctx):
    (ctx.tmp / "empty-folder").mkdir()
    load_tokenizer(str(ctx.tmp / "empty-folder"), tw.BASE)


@case("gguf-file-missing", ModelError, "gguf-folder: GGUF file model.Q8_0.gguf not found")
def _(ctx: Ctx):
    (ctx.tmp / "gguf-folder").mkdir()
    params = dataclasses.replace(tw.BASE, gguf_file="model.Q8_0.gguf")
    load_base_model(str(ctx.tmp / "gguf-folder"), params)


@case("base-package-missing", ModelError, "package 'no-such-lorauq-pkg' is not installed")
def _(ctx: Ctx):
    params = dataclasses.replace(
        tw.BASE, kind="pretrained", model="package:no-such-lorauq-pkg", gguf_file="m.gguf"
    )
    source_reference(params)


@case("base-package-lacks-gguf", ModelError, "has no file m.gguf (its GGUF files: [])")
def _(ctx: Ctx):
    params = dataclasses.replace(
        tw.BASE, kind="pretrained", model="package:pytest", gguf_file="m.gguf"
    )
    source_reference(params)


@case(
    "hub-model-revision-missing",
    ModelError,
    "org/model: revision 'v9.9' does not exist on the Hugging Face hub",
)
def _(ctx: Ctx):
    import transformers

    def from_pretrained(cls, reference, *, revision=None, **kwargs):
        # what transformers raises (transformers/utils/hub.py) for RevisionNotFoundError
        raise OSError(
            f"{revision} is not a valid git identifier (branch name, tag name or commit id) that "
            f"exists for this model name. Check the model page at "
            f"'https://huggingface.co/{reference}' for available revisions."
        ) from revision_not_found(f"models/{reference}", revision)

    ctx.monkeypatch.setattr(
        transformers.AutoModelForCausalLM, "from_pretrained", classmethod(from_pretrained)
    )
    params = dataclasses.replace(tw.BASE, kind="pretrained", model="org/model", revision="v9.9")
    load_base_model("org/model", params)


@case("gguf-base-not-exported", ModelError, "no dequantised base (config.json) of GGUF base")
def _(ctx: Ctx):
    params = dataclasses.replace(tw.BASE, kind="pretrained", model="some/model", gguf_file="m.gguf")
    load_base(params, ctx.tmp / "data" / "base")


@case("letter-is-unknown-token", ModelError, "tokenizer 'toy': answer letter 'c' … unknown token")
def _(ctx: Ctx):
    letter_token_ids(char_tokenizer([], drop="c"), 4)


@case("letter-merges-with-paren", ModelError, "answer letter 'b' … merges with them")
def _(ctx: Ctx):
    letter_token_ids(char_tokenizer([("(", "b")]), 3)


@case("lora-target-missing", ModelError, "lora.target_modules ['nope_proj']")
def _(ctx: Ctx):
    base = load_base_model(str(ctx.world["base_dir"]), tw.BASE)
    attach_lora(base, LoraParams(target_modules=["nope_proj"]), seed=0)


# --------------------------------------------------------------------------- stores


@case(
    "adapter-truncated",
    StoreError,
    "epoch-1: adapter cannot be loaded onto this base (Error while",
    slow=True,
)
def _(ctx: Ctx):
    member_dir = member_copy(ctx)
    truncate(member_dir / "epoch-1" / "adapter_model.safetensors")
    infer_member(ctx, member_dir)


@case("checkpoint-truncated-on-resume", StoreError, "epoch-1: checkpoint cannot be read", slow=True)
def _(ctx: Ctx):
    member_dir = member_copy(ctx)
    truncate(member_dir / "epoch-1" / "training_state.pt")
    tw.train(ctx.world["base_dir"], member_dir, epochs=2)


@case(
    "adapter-other-base",
    StoreError,
    "epoch-1: adapter cannot be loaded onto this base … size mismatch",
    slow=True,
)
def _(ctx: Ctx):
    infer_member(ctx, ctx.member, ctx.world["wide_dir"])


@case(
    "ivon-samples-from-an-adamw-member",
    StoreError,
    "epoch-1: not an IVON checkpoint (no posterior in its training state)",
    slow=True,
)
def _(ctx: Ctx):
    from lorauq.methods.ivon import ivon_samples

    base_dir = ctx.world["base_dir"]
    ivon_samples(
        load_base_model(str(base_dir), tw.BASE),
        ctx.world["tokenizer"],
        ctx.member / "epoch-1",
        {"in_domain": tw.eval_set()},
        epoch=1,
        samples=1,
        seed=0,
        infer=tw.INFER,
    )


@case(
    "checkpoint-other-base-on-resume",
    StoreError,
    "epoch-1: checkpoint does not fit this base model … size mismatch",
    slow=True,
)
def _(ctx: Ctx):
    tw.train(ctx.world["wide_dir"], member_copy(ctx), epochs=2)


@case("member-without-checkpoints", StoreError, "member-9: no complete epoch checkpoints")
def _(ctx: Ctx):
    (ctx.tmp / "member-9" / ".epoch-1.abcd1234").mkdir(parents=True)  # a killed save only
    evaluate_member(None, None, {}, ctx.tmp / "member-9", ctx.tmp / "member-9.parquet", member=9)


@case(
    "param-joint-dropout-with-gradient-checkpointing",
    ConfigError,
    "tiny.ensembles.lora_l2: train.joint with train.gradient_checkpointing and lora.dropout > 0",
)
def _(ctx: Ctx):
    overrides = {"train.joint": True, "train.gradient_checkpointing": True, "lora.dropout": 0.1}
    params(**overrides)


@case(
    "param-mc-dropout-passes",
    ConfigError,
    "tiny.methods.mc_dropout.passes must be at least 1, got 0",
)
def _(ctx: Ctx):
    params(**{"methods.mc_dropout.passes": 0})


@case(
    "param-mc-dropout-p",
    ConfigError,
    "tiny.methods.mc_dropout.dropout must be in [0, 1), got 1.0",
)
def _(ctx: Ctx):
    params(**{"methods.mc_dropout.dropout": 1.0})


@case(
    "param-laplace-prior",
    ConfigError,
    "tiny.methods.laplace.prior_precision: 'valid' is not one of ['validation', 'marglik']",
)
def _(ctx: Ctx):
    params(**{"methods.laplace.prior_precision": "valid"})


@case("param-ivon-ess", ConfigError, "tiny.methods.ivon.ess must be positive, got 0.0")
def _(ctx: Ctx):
    params(**{"methods.ivon.ess": 0.0})


@case(
    "param-ivon-hess-init",
    ConfigError,
    "tiny.methods.ivon.hess_init must be positive, got -0.001",
)
def _(ctx: Ctx):
    params(**{"methods.ivon.hess_init": -0.001})


@case("param-ivon-beta2", ConfigError, "tiny.methods.ivon.beta2 must be in [0, 1), got 1.0")
def _(ctx: Ctx):
    params(**{"methods.ivon.beta2": 1.0})


@case("param-ivon-beta1", ConfigError, "tiny.methods.ivon.beta1 must be in [0, 1), got -0.1")
def _(ctx: Ctx):
    params(**{"methods.ivon.beta1": -0.1})


@case("param-method-runs", ConfigError, "tiny.methods.ivon.runs must be at least 1, got 0")
def _(ctx: Ctx):
    params(**{"methods.ivon.runs": 0})


@case(
    "param-laplace-runs-past-members",
    ConfigError,
    "tiny.methods.laplace.runs is 6, but run r fits around member r and the main ensemble "
    "has no member [5]",
)
def _(ctx: Ctx):
    params(**{"methods.laplace.runs": 6})


@case("param-ivon-samples", ConfigError, "tiny.methods.ivon.samples must be at least 1, got 0")
def _(ctx: Ctx):
    params(**{"methods.ivon.samples": 0})


@case(
    "param-ivon-train-samples",
    ConfigError,
    "tiny.methods.ivon.train_samples must be at least 1, got 0",
)
def _(ctx: Ctx):
    params(**{"methods.ivon.train_samples": 0})


@case("ivon-float16-base", ConfigError, "tiny.base.dtype is float16 but methods.run has 'ivon'")
def _(ctx: Ctx):
    params(**{"base.dtype": "float16", "methods.run": ["ivon"]})


@case(
    "param-laplace-prior-negative",
    ConfigError,
    "tiny.methods.laplace.prior_precision must be positive (or 'validation', 'marglik'), got -1.0",
)
def _(ctx: Ctx):
    params(**{"methods.laplace.prior_precision": -1.0})


@case(
    "laplace-validation-without-held-out-rows",
    ConfigError,
    "tiny.data.calibration_fraction is 0 but methods.laplace.prior_precision is 'validation'",
)
def _(ctx: Ctx):
    params(**{"data.calibration_fraction": 0.0, "methods.run": ["laplace"]})


@case(
    "temperature-without-held-out-rows",
    ConfigError,
    "tiny.data.calibration_fraction is 0 but methods.run has 'temperature', which fits on the "
    "held-out training rows",
)
def _(ctx: Ctx):
    params(**{"data.calibration_fraction": 0.0, "methods.run": ["temperature"]})


@case(
    "early-stopped-without-held-out-rows",
    ConfigError,
    "tiny.data.calibration_fraction is 0 but methods.run has 'early_stopped', which chooses "
    "each member's checkpoint on the held-out training rows",
)
def _(ctx: Ctx):
    params(**{"data.calibration_fraction": 0.0, "methods.run": ["early_stopped"]})


@case(
    "methods-without-main-ensemble",
    ConfigError,
    "tiny.methods.run ['single']: set tiny.analysis.main, the ensemble the methods start from",
)
def _(ctx: Ctx):
    params(**{"analysis.main": None, "methods.run": ["single"]})


@case("method-unknown-name", ConfigError, "'dropout' is not a method; methods: ['single'")
def _(ctx: Ctx):
    from lorauq.methods.registry import method

    method("dropout")  # what `python -m lorauq.stages.methods dropout` looks up first


@case(
    "param-top-level-main-stale",
    ConfigError,
    "the top-level main 'r32' are not those of profile 'tiny' ('lora_l2')",
)
def _(ctx: Ctx):
    text = PARAMS.read_text(encoding="utf-8").replace("\nmain: lora_l2\n", "\nmain: r32\n")
    path = ctx.tmp / "params.yaml"
    path.write_text(text, encoding="utf-8")
    load_params(path)


@case(
    "method-module-reaches-another",
    ConfigError,
    "lorauq/methods/single.py reaches another method's module ['laplace.py']",
)
def _(ctx: Ctx):
    from lorauq.methods import pipeline
    from lorauq.methods.registry import METHODS

    copy = ctx.tmp / "repo"
    shutil.copytree(ROOT / "lorauq", copy / "lorauq", ignore=shutil.ignore_patterns("__pycache__"))
    with (copy / "lorauq" / "methods" / "single.py").open("a", encoding="utf-8") as handle:
        handle.write("from lorauq.methods.laplace import PRIOR_GRID  # noqa: E402\n")
    pipeline.method_stage(METHODS, copy)


@case(
    "param-checkpoints-past-epochs",
    ConfigError,
    "tiny.methods.checkpoints.last is 9, more than the 8 epochs",
)
def _(ctx: Ctx):
    params(**{"methods.checkpoints.last": 9, "train.epochs": 8})


@case("param-calibration-fraction", ConfigError, "tiny.data.calibration_fraction must be in [0, 1)")
def _(ctx: Ctx):
    params(**{"data.calibration_fraction": 1.0})


@case(
    "calibration-leaves-no-training-rows",
    ConfigError,
    "data.calibration_fraction=0.9 holds out 2 of the 2 training rows and leaves none",
)
def _(ctx: Ctx):
    from lorauq.stages.prepare import split_calibration

    split_calibration(load_jsonl(ctx, GOOD, GOOD), 0.9)


@case(
    "joint-dropout-with-gradient-checkpointing",
    ConfigError,
    "train.gradient_checkpointing with lora.dropout > 0",
    slow=True,
)
def _(ctx: Ctx):
    from lorauq.joint import train_members

    train_members(
        load_base_model(str(ctx.world["base_dir"]), tw.BASE),
        ctx.world["tokenizer"],
        tw.train_set(),
        {0: ctx.tmp / "member-0"},
        lora=dataclasses.replace(tw.LORA, dropout=0.1),
        train=dataclasses.replace(tw.TRAIN, gradient_checkpointing=True),
        progress=False,
    )


@case(
    "joint-checkpoint-other-base-on-resume",
    StoreError,
    "epoch-1: checkpoint does not fit this base model … shape",
    slow=True,
)
def _(ctx: Ctx):
    member_copy(ctx)
    tw.train_joint(ctx.world["wide_dir"], ctx.tmp, members=[0], epochs=2)


@case(
    "joint-adapters-of-different-configs",
    StoreError,
    "member-5/epoch-1: adapter config differs from … in 'r'",
    slow=True,
)
def _(ctx: Ctx):
    from lorauq.infer import evaluate_members

    other = ctx.tmp / "member-5"
    shutil.copytree(ctx.member, other)
    config_file = other / "epoch-1" / "adapter_config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "r": 2}))
    evaluate_members(
        load_base_model(str(ctx.world["base_dir"]), tw.BASE),
        ctx.world["tokenizer"],
        {"in_domain": tw.eval_set()},
        {0: ctx.member, 5: other},
        ctx.tmp / "members.parquet",
        infer=dataclasses.replace(tw.INFER, joint=True),
        progress=False,
    )


@case(
    "logits-wrong-schema", StoreError, "member-0.parquet: logits table lacks column(s) ['subject']"
)
def _(ctx: Ctx):
    path = ctx.tmp / "member-0.parquet"
    logits_frame().drop(columns="subject").to_parquet(path)
    read_logits(path)


@case(
    "logits-non-finite-in-file",
    StoreError,
    "member-0.parquet: non-finite letter logit in row 1 (id 'q1')",
)
def _(ctx: Ctx):
    path = ctx.tmp / "member-0.parquet"
    frame = logits_frame()
    frame.loc[1, "logit_b"] = np.inf
    frame.to_parquet(path)
    read_logits(path)


@case("disk-full-mid-write", StoreError, "member-0.parquet: no space left while writing")
def _(ctx: Ctx):
    path = ctx.tmp / "member-0.parquet"
    write_logits(logits_frame(), path)
    before = path.read_bytes()

    def fill_disk(self, target, *args, **kwargs):
        Path(target).write_bytes(b"PAR1 half a table")
        raise OSError(errno.ENOSPC, "No space left on device")

    ctx.monkeypatch.setattr(pd.DataFrame, "to_parquet", fill_disk)

    def old_file_intact_and_no_temp():
        assert path.read_bytes() == before
        assert sorted(p.name for p in ctx.tmp.iterdir()) == ["member-0.parquet"]

    ctx.after.append(old_file_intact_and_no_temp)
    write_logits(logits_frame(4), path)


# --------------------------------------------------------------------------- metrics


@case("nan-logits-to-metrics", DataError, "logits: NaN in a used slot (below n_choices) at (0, 1)")
def _(ctx: Ctx):
    letter_probs(np.array([[0.0, np.nan, 1.0]]), np.array([3]))


@case("inf-logits-to-metrics", DataError, "logits: +inf in a used slot at (1, 0)")
def _(ctx: Ctx):
    letter_probs(np.array([[0.0, 1.0], [np.inf, 0.0]]), np.array([2, 2]))


@case("nan-probs-to-metrics", DataError, "probs: contains NaN or inf, first at index (1, 0)")
def _(ctx: Ctx):
    accuracy(np.array([[0.5, 0.5], [np.nan, 1.0]]), np.array([0, 1]))


@case(
    "progress-mode-unknown",
    ConfigError,
    "LORAUQ_PROGRESS='widgets': expected one of bars, lines, off",
)
def _(ctx: Ctx):
    from lorauq.progress import progress_bar

    ctx.monkeypatch.setenv("LORAUQ_PROGRESS", "widgets")
    return progress_bar(range(1), "x")


@case("gpu-results-malformed", DataError, "h100.json.rows[1].tflops: 999 but 4·N·tokens/s is")
def _(ctx: Ctx):
    from workspace import load_script

    results = load_script("gpu_results")
    source = ROOT / "benchmarks" / "results" / "nvidia-h100-80gb-hbm3-2026-11-26.json"
    payload = json.loads(source.read_text(encoding="utf-8"))
    payload["rows"][1]["tflops"] = 999
    path = ctx.tmp / "h100.json"
    path.write_text(json.dumps(payload), encoding="utf-8")
    results.read_results(path)


@case("colab-run-unknown", ConfigError, "RUN: 'ensembel' is not a run (did you mean 'ensemble'?)")
def _(ctx: Ctx):
    from lorauq.colab import Settings

    Settings(run="ensembel")


@case(
    "colab-ensemble-on-a-small-card",
    ConfigError,
    "RUN 'ensemble' trains 5 members jointly and needs an A100/H100 … Tesla T4 (14.7 GiB",
)
def _(ctx: Ctx):
    from lorauq.colab import Card, Settings, overrides

    raw = yaml.safe_load(PARAMS.read_text(encoding="utf-8"))
    overrides(raw, Settings(run="ensemble"), Card("Tesla T4", (7, 5), 14.7))


@case(
    "colab-settings-missing",
    ConfigError,
    "colab-settings.json: no saved settings; run the parameters cell and the install cell first",
)
def _(ctx: Ctx):
    from lorauq.colab import session

    session(ctx.tmp)


@case(
    "git-identity-missing",
    ConfigError,
    "git config user.name and user.email: not set in … needs a git identity … "
    "git config --global user.name",
)
def _(ctx: Ctx):
    import subprocess

    from lorauq.preflight import check_git_identity

    # a clone on a machine where git was never told who you are: no global, system or
    # environment identity (tests/test_makefile.py runs make smol itself in that state)
    for role in ("AUTHOR", "COMMITTER"):
        for key in ("NAME", "EMAIL"):
            ctx.monkeypatch.delenv(f"GIT_{role}_{key}", raising=False)
    ctx.monkeypatch.setenv("HOME", str(ctx.tmp))
    ctx.monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    ctx.monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(ctx.tmp / "no-gitconfig"))
    subprocess.run(["git", "init", "-q", str(ctx.tmp / "clone")], check=True)
    check_git_identity(ctx.tmp / "clone")


# --------------------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def tiny(tiny_base: Path, tiny_tokenizer, tmp_path_factory) -> dict[str, Any]:
    """The session's tiny base, and a wider base that a member of the tiny one does not fit."""
    wide_dir = tmp_path_factory.mktemp("bad-inputs") / "wide"
    wide = build_tiny_model(tiny_tokenizer, dataclasses.replace(tw.BASE, hidden_size=48))
    wide.save_pretrained(wide_dir)
    tiny_tokenizer.save_pretrained(wide_dir)
    return {"base_dir": tiny_base, "wide_dir": wide_dir, "tokenizer": tiny_tokenizer}


def excerpt_matches(excerpt: str, message: str) -> bool:
    """``a … b`` matches a message holding ``a`` and, later, ``b``."""
    pattern = ".*".join(re.escape(part) for part in excerpt.split(" … "))
    return re.search(pattern, message, flags=re.DOTALL) is not None


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(spec, id=case_id, marks=[pytest.mark.slow] if spec.slow else [])
        for case_id, spec in CASES.items()
    ],
)
def test_bad_input(spec: Case, tmp_path: Path, monkeypatch, request) -> None:
    ctx = Ctx(tmp_path, monkeypatch, request)
    with pytest.raises(LorauqError) as info:
        spec.run(ctx)
    assert type(info.value) is spec.error, f"{type(info.value).__name__}: {info.value}"
    assert excerpt_matches(spec.excerpt, str(info.value)), str(info.value)
    for check in ctx.after:
        check()


def doc_rows() -> dict[str, tuple[str, str]]:
    """``{id: (error class, excerpt)}`` from the table of ``docs/bad-inputs.md``."""
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith("`"):
            continue
        case_id, _, error, excerpt = (cell.strip("`") for cell in cells)
        assert case_id not in rows, f"{case_id} appears twice in {DOC.name}"
        rows[case_id] = (error, excerpt)
    return rows


def test_doc_and_cases_list_the_same_rows() -> None:
    rows = doc_rows()
    assert len(rows) >= 25
    assert sorted(set(rows) - set(CASES)) == [], "doc rows without a test"
    assert sorted(set(CASES) - set(rows)) == [], "tests without a doc row"
    for case_id, (error, excerpt) in rows.items():
        spec = CASES[case_id]
        assert (error, excerpt) == (spec.error.__name__, spec.excerpt), case_id


def test_every_error_class_is_catalogued_and_a_lorauq_error() -> None:
    classes = {spec.error for spec in CASES.values()}
    assert classes == {ConfigError, DataError, ModelError, StoreError}
    assert all(issubclass(cls, errors.LorauqError) for cls in classes)
