"""lorauq against the plain way, on the same model and questions, in one run.

Training: lorauq's ``train_member`` (answer-position logits only, length-bucketed batches)
against the plain way, HF ``Trainer`` + peft computing the full sequence × vocabulary logits
of prompts padded to ``train.max_length`` (128, the authors' setting), with the same
answer-position cross-entropy. Where the two differ, the difference favours the plain way: it
omits the LoRA prior term, its tokenization happens before the clock starts, and lorauq's
time includes writing its epoch checkpoint.

Evaluation of an ensemble (the prior plus M members × E epochs): lorauq's ``evaluate_prior`` +
``evaluate_member`` (one base load per process, adapters swapped, token-budget batches, the
LM head at the answer position only, K letter logits + one log-sum-exp kept) against the
authors' way: a fresh base + adapter load per (member, epoch) job, batches of 2 prompts padded
to 512 tokens, full logits. The stored logits of both are compared (max |Δ|).

Two random-weight Mistral-architecture models: ``cpu`` (~60 M parameters, a 32k vocabulary,
so compute dominates as on the real model) and ``tiny`` (the tiny profile's geometry). The
questions are generated: made-up words in the paper's prompt, about 60 tokens each like
CommonsenseQA's under Mistral's tokenizer. FLOP/s count useful work only (4·N per trained
and 2·N per evaluated real token, N = transformer-block parameters), as a fraction of this
machine's measured float32 matmul FLOP/s.

    OMP_NUM_THREADS=2 .venv/bin/python -m benchmarks.run            # the table of the README
    .venv/bin/python -m benchmarks.run --quick                      # a smoke run (the tests)

It ends with ``ratio train_vs_plain: X (model)``, ``ratio eval_vs_authors: Y (model)``,
``ratio joint_vs_separate: Z (model)`` (an ensemble of ``joint_members`` trained in one pass
vs one member after another, each on a fresh base as a one-by-one finetune stage has it) and
``ratio joint_eval_vs_separate: W (model)`` (evaluated in one pass vs one adapter after
another), for each model, the first model first (its numbers are also the JSON's top level).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lorauq.atomic import write_text_atomic
from lorauq.config import BaseParams, InferParams, LoraParams, TrainParams
from lorauq.infer import evaluate_member, evaluate_members, evaluate_prior
from lorauq.joint import train_members
from lorauq.lora import lora_config
from lorauq.model import load_base_model, load_tokenizer
from lorauq.prompt import format_prompt, letter_token_ids
from lorauq.schema import LOGIT_COLUMNS, PRIOR_MEMBER
from lorauq.store import read_logits
from lorauq.tiny.model import train_tokenizer
from lorauq.train import train_member

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from gpu_check import block_parameters, matmul_peak

GEOMETRIES = {
    "cpu": dict(
        vocab_size=32000,
        hidden_size=512,
        intermediate_size=1792,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=64,
    ),
    "tiny": dict(
        vocab_size=None,  # the tokenizer's own, as in the tiny profile
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
    ),
}
LORA = LoraParams(r=8, alpha=32, dropout=0.0, target_modules=["q_proj", "v_proj"])
TRAIN = TrainParams(epochs=1, lr=5e-6, batch_size=8, max_length=128, grad_clip=0.3, threads=0)
AUTHORS_EVAL_BATCH = 2
AUTHORS_EVAL_LENGTH = 512


@dataclass(frozen=True)
class Workload:
    train_questions: int
    eval_questions: int
    members: int
    epochs: int
    joint_members: int  # the ensemble trained and evaluated together vs one by one


FULL = Workload(train_questions=96, eval_questions=48, members=2, epochs=2, joint_members=5)
QUICK = Workload(train_questions=16, eval_questions=6, members=1, epochs=1, joint_members=2)


@dataclass
class Row:
    model: str
    phase: str
    method: str
    seconds: float
    tokens_per_s: float
    questions_per_s: float
    gflops: float
    fraction_of_peak: float


def made_up_questions(n: int, seed: int) -> pd.DataFrame:
    """Multiple-choice questions of made-up words: ~12-word questions, 5 short choices."""
    rng = np.random.default_rng(seed)
    syllables = ["ka", "lo", "mi", "nu", "re", "sa", "ti", "vo", "zu", "pe", "do", "fi"]
    words = ["".join(rng.choice(syllables, size=rng.integers(2, 4))) for _ in range(400)]

    def phrase(low: int, high: int) -> str:
        return " ".join(rng.choice(words, size=int(rng.integers(low, high + 1))))

    rows = [
        {
            "id": f"q{i}",
            "source": "generated",
            "subject": "generated",
            "group": "generated",
            "question": phrase(9, 15) + "?",
            "choices": [phrase(1, 3) for _ in range(5)],
            "answer": int(rng.integers(0, 5)),
        }
        for i in range(n)
    ]
    return pd.DataFrame(rows)


def build_base(folder: Path, tokenizer, geometry: dict) -> None:
    """A random-weight Mistral-architecture base saved like a downloaded one (weights + tokenizer)."""
    from transformers import MistralConfig, MistralForCausalLM

    vocab = geometry["vocab_size"] or len(tokenizer)
    config = MistralConfig(
        **{**geometry, "vocab_size": vocab},
        max_position_embeddings=1024,
        sliding_window=None,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    MistralForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def base_params(folder: Path) -> BaseParams:
    return BaseParams(kind="pretrained", model=str(folder), dtype="float32")


# --- training ------------------------------------------------------------------------------


def train_lorauq(folder: Path, frame: pd.DataFrame, out: Path) -> float:
    params = base_params(folder)
    tokenizer = load_tokenizer(str(folder), params)
    model = load_base_model(str(folder), params)
    start = time.perf_counter()
    train_member(
        model, tokenizer, frame, member=0, member_dir=out, lora=LORA, train=TRAIN, progress=False
    )
    return time.perf_counter() - start


def train_plain(folder: Path, frame: pd.DataFrame, out: Path) -> float:
    """HF Trainer + peft, prompts padded to max_length, full logits, loss at the answer."""
    import torch.nn.functional as F
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"  # the answer position is then the last one
    letters = letter_token_ids(tokenizer, 5)
    prompts = [format_prompt(row) for row in frame.to_dict("records")]
    encoded = tokenizer(prompts, padding="max_length", max_length=TRAIN.max_length)
    dataset = [
        {"input_ids": ids, "attention_mask": mask, "labels": letters[answer]}
        for ids, mask, answer in zip(
            encoded["input_ids"], encoded["attention_mask"], frame["answer"], strict=True
        )
    ]

    def answer_loss(outputs, labels, num_items_in_batch=None):
        return F.cross_entropy(outputs.logits[:, -1, :].float(), labels)

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    start = time.perf_counter()  # like train_member's: LoRA set-up and training, no load
    torch.manual_seed(0)
    model = get_peft_model(model, lora_config(LORA))
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=TRAIN.batch_size,
        num_train_epochs=1,
        learning_rate=TRAIN.lr,
        lr_scheduler_type="constant",
        max_grad_norm=TRAIN.grad_clip,
        weight_decay=0.0,
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        disable_tqdm=True,
        use_cpu=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset, compute_loss_func=answer_loss)
    trainer.train()
    return time.perf_counter() - start


def train_separately(folder: Path, frame: pd.DataFrame, out: Path, members: int) -> float:
    """``train_member`` per member, each on a fresh base as a finetune stage has it."""
    params = base_params(folder)
    tokenizer = load_tokenizer(str(folder), params)
    seconds = 0.0
    for member in range(members):
        model = load_base_model(str(folder), params)
        start = time.perf_counter()
        train_member(
            model,
            tokenizer,
            frame,
            member=member,
            member_dir=out / f"member-{member}",
            lora=LORA,
            train=TRAIN,
            progress=False,
        )
        seconds += time.perf_counter() - start
    return seconds


def train_jointly(folder: Path, frame: pd.DataFrame, out: Path, members: int) -> float:
    params = base_params(folder)
    tokenizer = load_tokenizer(str(folder), params)
    model = load_base_model(str(folder), params)
    start = time.perf_counter()
    train_members(
        model,
        tokenizer,
        frame,
        {m: out / f"member-{m}" for m in range(members)},
        lora=LORA,
        train=TRAIN,
        progress=False,
    )
    return time.perf_counter() - start


def max_adapter_difference(a: Path, b: Path, members: int) -> float:
    from safetensors.torch import load_file

    worst = 0.0
    for member in range(members):
        x = load_file(a / f"member-{member}" / "epoch-1" / "adapter_model.safetensors")
        y = load_file(b / f"member-{member}" / "epoch-1" / "adapter_model.safetensors")
        worst = max(worst, max(float((x[k] - y[k]).abs().max()) for k in x))
    return worst


# --- evaluation ----------------------------------------------------------------------------


def make_adapters(folder: Path, frame: pd.DataFrame, out: Path, workload: Workload) -> None:
    """M members × E epochs of real lorauq checkpoints (a short training run each)."""
    params = base_params(folder)
    tokenizer = load_tokenizer(str(folder), params)
    train = replace(TRAIN, epochs=workload.epochs, lr=1e-3)  # large lr: members really differ
    for member in range(workload.members):
        model = load_base_model(str(folder), params)
        train_member(
            model,
            tokenizer,
            frame,
            member=member,
            member_dir=out / f"member-{member}",
            lora=LORA,
            train=train,
            progress=False,
        )


def evaluate_lorauq(folder: Path, eval_sets: dict, adapters: Path, out: Path, workload) -> float:
    """Timed from the base load: one load for the whole ensemble is lorauq's point."""
    params = base_params(folder)
    start = time.perf_counter()
    tokenizer = load_tokenizer(str(folder), params)
    model = load_base_model(str(folder), params)
    infer = InferParams(max_length=AUTHORS_EVAL_LENGTH, batch_tokens=8192)
    evaluate_prior(model, tokenizer, eval_sets, out / "prior.parquet", infer=infer, progress=False)
    for member in range(workload.members):
        evaluate_member(
            model,
            tokenizer,
            eval_sets,
            adapters / f"member-{member}",
            out / f"member-{member}.parquet",
            member=member,
            infer=infer,
            progress=False,
        )
    return time.perf_counter() - start


@torch.inference_mode()
def evaluate_authors(folder: Path, frame: pd.DataFrame, adapters: Path, workload) -> tuple:
    """A fresh load per (member, epoch) job, batch 2, padded to 512, full logits."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    jobs = [(PRIOR_MEMBER, 0)] + [
        (m, e) for m in range(workload.members) for e in range(1, workload.epochs + 1)
    ]
    prompts = [format_prompt(row) for row in frame.to_dict("records")]
    results: dict[tuple[int, int], np.ndarray] = {}
    start = time.perf_counter()
    for member, epoch in jobs:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        tokenizer.padding_side = "right"
        letters = letter_token_ids(tokenizer, 5)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        if member != PRIOR_MEMBER:
            model = PeftModel.from_pretrained(model, adapters / f"member-{member}/epoch-{epoch}")
        model.eval()
        rows = []
        for i in range(0, len(prompts), AUTHORS_EVAL_BATCH):
            batch = tokenizer(
                prompts[i : i + AUTHORS_EVAL_BATCH],
                padding="max_length",
                max_length=AUTHORS_EVAL_LENGTH,
                return_tensors="pt",
            )
            logits = model(**batch).logits  # (batch, 512, vocab)
            last = batch["attention_mask"].sum(-1) - 1
            rows.append(logits[torch.arange(len(last)), last][:, letters].numpy())
        results[(member, epoch)] = np.concatenate(rows)
    return time.perf_counter() - start, results


def evaluate_ensemble(
    folder: Path, eval_sets: dict, adapters: Path, out: Path, members: int, *, joint: bool
) -> float:
    """``evaluate_members`` of the ensemble on one loaded base into one table, as an inference
    stage of several members does: jointly (one pass per batch for all members) or one
    adapter after another (``infer.joint``)."""
    params = base_params(folder)
    tokenizer = load_tokenizer(str(folder), params)
    model = load_base_model(str(folder), params)
    infer = InferParams(max_length=AUTHORS_EVAL_LENGTH, batch_tokens=8192, joint=joint)
    start = time.perf_counter()
    evaluate_members(
        model,
        tokenizer,
        eval_sets,
        {m: adapters / f"member-{m}" for m in range(members)},
        out / f"members-0-{members - 1}.parquet",
        infer=infer,
        progress=False,
    )
    return time.perf_counter() - start


def max_table_difference(a: Path, b: Path) -> float:
    x, y = read_logits(sorted(a.glob("*.parquet"))), read_logits(sorted(b.glob("*.parquet")))
    columns = [*LOGIT_COLUMNS[:5], "logsumexp_vocab"]
    return float(np.abs(x[columns].to_numpy() - y[columns].to_numpy()).max())


def max_logit_difference(store: Path, authors: dict) -> float:
    table = read_logits(sorted(store.glob("*.parquet")))
    worst = 0.0
    for (member, epoch), logits in authors.items():
        member = 0 if member == PRIOR_MEMBER else member  # readers copy the prior to members
        part = table[(table["member"] == member) & (table["epoch"] == epoch)]
        part = part.set_index("id").loc[[f"q{i}" for i in range(len(logits))]]
        ours = part[LOGIT_COLUMNS[: logits.shape[1]]].to_numpy()
        worst = max(worst, float(np.abs(ours - logits).max()))
    return worst


# --- the run -------------------------------------------------------------------------------


def bench_model(
    name: str, workload: Workload, peak: float, scratch: Path, repeats: int
) -> tuple[list, dict[str, float]]:
    train_frame = made_up_questions(workload.train_questions, seed=1)
    eval_frame = made_up_questions(workload.eval_questions, seed=2)
    texts = [format_prompt(r, with_answer=True) for r in train_frame.to_dict("records")]
    texts += [format_prompt(r) for r in eval_frame.to_dict("records")]
    tokenizer = train_tokenizer(texts, vocab_size=1000)
    folder = scratch / name / "base"
    build_base(folder, tokenizer, GEOMETRIES[name])
    n_blocks = block_parameters(load_base_model(str(folder), base_params(folder)))

    def tokens(frame: pd.DataFrame) -> int:
        return sum(len(tokenizer(format_prompt(r))["input_ids"]) for r in frame.to_dict("records"))

    def row(phase: str, method: str, seconds: float, n_tokens: int, n_questions: int, per: int):
        rate = n_tokens / seconds
        return Row(
            name,
            phase,
            method,
            seconds,
            rate,
            n_questions / seconds,
            per * n_blocks * rate / 1e9,
            per * n_blocks * rate / peak,
        )

    def best(run) -> float:
        """The fastest of ``repeats`` runs: the least disturbed by anything else on the machine."""
        return min(run(i) for i in range(repeats))

    base = scratch / name
    train_tokens = tokens(train_frame)
    rows = [
        row("train", "lorauq", best(lambda i: train_lorauq(folder, train_frame, base / f"t1-{i}")),
            train_tokens, len(train_frame), 4),
        row("train", "HF Trainer, full logits, pad 128",
            best(lambda i: train_plain(folder, train_frame, base / f"t2-{i}")),
            train_tokens, len(train_frame), 4),
    ]  # fmt: skip
    adapters = base / "adapters"
    make_adapters(folder, train_frame.head(16), adapters, workload)
    jobs = 1 + workload.members * workload.epochs
    eval_tokens, eval_questions = jobs * tokens(eval_frame), jobs * len(eval_frame)
    ours = best(
        lambda i: evaluate_lorauq(folder, {"eval": eval_frame}, adapters, base / f"l-{i}", workload)
    )
    timings = [evaluate_authors(folder, eval_frame, adapters, workload) for _ in range(repeats)]
    theirs, authors_logits = min(timings, key=lambda t: t[0])
    rows += [
        row("evaluate", "lorauq", ours, eval_tokens, eval_questions, 2),
        row("evaluate", "authors: reload per job, batch 2, pad 512", theirs,
            eval_tokens, eval_questions, 2),
    ]  # fmt: skip
    deltas = {"authors": max_logit_difference(base / "l-0", authors_logits)}
    # the ensemble: trained, then evaluated, together and one by one
    m = workload.joint_members
    ensemble = [
        best(lambda i: train_jointly(folder, train_frame, base / f"j-{i}", m)),
        best(lambda i: train_separately(folder, train_frame, base / f"s-{i}", m)),
    ]
    deltas["joint_adapters"] = max_adapter_difference(base / "j-0", base / "s-0", m)
    eval_sets = {"eval": eval_frame}
    ensemble_eval = [
        best(
            lambda i: evaluate_ensemble(
                folder, eval_sets, base / "j-0", base / f"je-{i}", m, joint=True
            )
        ),
        best(
            lambda i: evaluate_ensemble(
                folder, eval_sets, base / "j-0", base / f"se-{i}", m, joint=False
            )
        ),
    ]
    deltas["joint_logits"] = max_table_difference(base / "je-0", base / "se-0")
    rows += [
        row("ensemble train", f"lorauq joint: {m} members in one pass", ensemble[0],
            m * train_tokens, m * len(train_frame), 4),
        row("ensemble train", f"lorauq: {m} members one by one", ensemble[1],
            m * train_tokens, m * len(train_frame), 4),
        row("ensemble evaluate", f"lorauq joint: {m} members in one pass", ensemble_eval[0],
            m * tokens(eval_frame), m * len(eval_frame), 2),
        row("ensemble evaluate", f"lorauq: {m} members one by one", ensemble_eval[1],
            m * tokens(eval_frame), m * len(eval_frame), 2),
    ]  # fmt: skip
    return rows, deltas


def format_table(rows: list[Row]) -> str:
    lines = [
        "| model | phase | method | seconds | tokens/s | questions/s | GFLOP/s | of peak |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.phase} | {r.method} | {r.seconds:.2f} | {r.tokens_per_s:,.0f} | "
            f"{r.questions_per_s:,.2f} | {r.gflops:.2f} | {r.fraction_of_peak:.1%} |"
        )
    return "\n".join(lines)


def ratio(rows: list[Row], model: str, phase: str) -> float:
    ours, plain = (r for r in rows if r.model == model and r.phase == phase)
    return ours.tokens_per_s / plain.tokens_per_s


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["cpu", "tiny"], choices=list(GEOMETRIES))
    parser.add_argument("--quick", action="store_true", help="a small workload (for the tests)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per timing (the best counts)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    workload = QUICK if args.quick else FULL
    # The best of three: a peak measured while something else ran would flatter every fraction.
    peak = max(matmul_peak(torch.device("cpu"), torch.float32, 2048, repeats=5) for _ in range(3))
    print(f"CPU, {torch.get_num_threads()} threads: float32 matmul {peak / 1e9:.1f} GFLOP/s")
    print(f"workload: {workload}, best of {args.repeats}")
    rows: list[Row] = []
    deltas: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            model_rows, deltas[name] = bench_model(name, workload, peak, Path(tmp), args.repeats)
            rows += model_rows
            print(format_table(model_rows), flush=True)
    print()
    print(format_table(rows))
    for name, delta in deltas.items():
        print(
            f"{name}: max |Δ letter logit| lorauq vs authors' way = {delta['authors']:.2e}; "
            f"joint vs one by one: max |Δ adapter| = {delta['joint_adapters']:.2e}, "
            f"max |Δ letter logit| = {delta['joint_logits']:.2e}"
        )
    first = args.models[0]
    result = {
        "peak_gflops": peak / 1e9,
        "threads": torch.get_num_threads(),
        "workload": asdict(workload),
        "repeats": args.repeats,
        "rows": [asdict(r) for r in rows],
        "max_logit_delta": {name: delta["authors"] for name, delta in deltas.items()},
        "joint_max_adapter_delta": {n: d["joint_adapters"] for n, d in deltas.items()},
        "joint_max_logit_delta": {n: d["joint_logits"] for n, d in deltas.items()},
        "train_vs_plain": ratio(rows, first, "train"),
        "eval_vs_authors": ratio(rows, first, "evaluate"),
        "joint_vs_separate": ratio(rows, first, "ensemble train"),
        "joint_eval_vs_separate": ratio(rows, first, "ensemble evaluate"),
        "by_model": {
            name: {
                "train_vs_plain": ratio(rows, name, "train"),
                "eval_vs_authors": ratio(rows, name, "evaluate"),
                "joint_vs_separate": ratio(rows, name, "ensemble train"),
                "joint_eval_vs_separate": ratio(rows, name, "ensemble evaluate"),
            }
            for name in args.models
        },
    }
    for name in args.models:
        for key, value in result["by_model"][name].items():
            print(f"ratio {key}: {value:.2f} ({name})")
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
