"""Check a GPU for the paper profile before spending hours on it: no download needed.

Builds a **random-weight model of Mistral-7B-v0.1's exact geometry** on the GPU, attaches the
paper's LoRA (r=8, α=32 on q_proj, v_proj), runs a few paper-profile training steps and
evaluation batches through lorauq's own code (``train.train_step``, ``readout.sequence_letter_logits``)
and prints tokens/s and achieved TFLOP/s against the card's measured matmul peak. Prompt
lengths follow the real sets under Mistral's tokenizer family: CommonsenseQA's paper prompts are
48–72 tokens (5th–95th percentile; MMLU's 51–188), measured with the Llama-2 SentencePiece
tokenizer on the released files.

FLOPs are counted the usual way, with N the parameters of the transformer blocks (the
embedding is a lookup and the LM head runs at one position only): 4·N per trained token
(forward, plus the backward pass through the activations; the frozen weights get no gradient)
and 2·N per evaluated token. Attention's own FLOPs are left out, so the figures are slightly
conservative.

    python scripts/gpu_check.py                         # bf16, the paper's setting
    python scripts/gpu_check.py --quantization none 4bit  # bf16, then the QLoRA base (bitsandbytes)
    python scripts/gpu_check.py --joint 5               # also 5 members trained in one pass
    python scripts/gpu_check.py --cpu-tiny              # a tiny geometry on CPU (the tests run this)

``--joint M`` adds a "train joint" row per batch size: M members' batches in one forward and
backward through the base with stacked adapters (``joint.joint_step``), counted like the
single-member rows (tokens of all M members), so the two rows compare directly; and an
"evaluate joint" row: each question once per member in one pass (``readout.stacked_letter_logits``,
the token budget bounding the whole pass, as ``infer.joint`` runs it).

With ``--json PATH`` the numbers are also written as JSON.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from lorauq.atomic import write_text_atomic
from lorauq.batching import collate_left, pad_multiple
from lorauq.config import BaseParams, InferParams, LoraParams, TrainParams
from lorauq.joint import joint_step
from lorauq.lora import attach_lora
from lorauq.model import load_base_model
from lorauq.readout import sequence_letter_logits, stacked_letter_logits
from lorauq.stacked import StackedLora
from lorauq.train import adamw, loss_scaler, make_optimizer, train_step

# Mistral-7B-v0.1's config.json (the hub's), so the check needs no download.
MISTRAL_7B = dict(
    vocab_size=32000,
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
    max_position_embeddings=32768,
    rope_theta=10000.0,
    rms_norm_eps=1e-5,
    sliding_window=4096,
    tie_word_embeddings=False,
)
MISTRAL_7B_PARAMETERS = 7_241_732_096
TINY = dict(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=224,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=1024,
    sliding_window=None,
    tie_word_embeddings=False,
)
# 5th–95th percentile prompt lengths (paper template, Llama-2 tokenizer), see the docstring.
TRAIN_LENGTHS = (48, 72)
EVAL_LENGTHS = (51, 188)
LETTERS = 5


@dataclass
class Result:
    """One row of the report."""

    phase: str
    quantization: str
    batch: str
    tokens_per_s: float
    questions_per_s: float
    tflops: float
    fraction_of_peak: float
    peak_memory_gib: float | None


def mistral_config(geometry: dict):
    from transformers import MistralConfig

    return MistralConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0, **geometry)


def block_parameters(model) -> int:
    """Parameters of the transformer blocks and final norm: N in the 4·N / 2·N FLOP counts.

    Count it on an unquantized model: bitsandbytes packs two 4-bit weights per stored element.
    """
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return sum(p.numel() for p in inner.model.layers.parameters()) + sum(
        p.numel() for p in inner.model.norm.parameters()
    )


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int, repeats: int) -> float:
    """Measured dense matmul FLOP/s of this device in ``dtype`` (the denominator of every fraction)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def random_sequences(n: int, lengths: tuple[int, int], vocab: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(lengths[0], lengths[1] + 1, size=n)
    return [rng.integers(3, vocab, size=int(s)).tolist() for s in sizes]


def build_random_model(geometry: dict, dtype: torch.dtype, device: torch.device):
    """Random weights, created directly on ``device`` in ``dtype`` (no 29 GB fp32 detour)."""
    from transformers import MistralForCausalLM

    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = MistralForCausalLM(mistral_config(geometry))
    finally:
        torch.set_default_dtype(previous)
    model.requires_grad_(False)
    return model.eval()


def time_training(
    model,
    train: TrainParams,
    batch_size: int,
    steps: int,
    warmup: int,
    vocab: int,
    multiple: int,
) -> tuple[float, float]:
    """Trained (non-pad) tokens/s and questions/s of ``train_step`` at ``batch_size``."""
    device = next(model.parameters()).device
    optimizer = make_optimizer(model, train)
    batches = [
        random_sequences(batch_size, TRAIN_LENGTHS, vocab, seed=step)
        for step in range(warmup + steps)
    ]
    targets = torch.randint(3, vocab, (batch_size,), device=device)
    model.train()
    tokens = 0
    for step, batch in enumerate(batches):
        if step == warmup:
            synchronize(device)
            start = time.perf_counter()
        inputs = collate_left(batch, 0, device, multiple)
        loss, _ = train_step(model, optimizer, inputs, targets, train)
        if step >= warmup:
            tokens += sum(len(s) for s in batch)
    loss.item()
    synchronize(device)
    elapsed = time.perf_counter() - start
    model.eval()
    if not torch.isfinite(loss):
        raise RuntimeError(f"training loss is {loss.item()} on random weights")
    return tokens / elapsed, steps * batch_size / elapsed


def time_joint_training(
    base,
    lora: LoraParams,
    train: TrainParams,
    members: int,
    batch_size: int,
    steps: int,
    warmup: int,
    vocab: int,
    multiple: int,
) -> tuple[float, float]:
    """Trained tokens/s and questions/s of ``joint_step``: ``members`` members at
    ``batch_size`` each per pass (all members' tokens counted). The stack is removed after."""
    device = next(base.parameters()).device
    stack = StackedLora(base, lambda m: attach_lora(base, lora, seed=m), list(range(members)))
    try:
        slots = list(range(members))
        optimizers = [adamw(stack.parameters(j), train) for j in slots]
        scalers = [loss_scaler(base) for _ in slots]
        generators = [torch.Generator(device) for _ in slots]
        targets = [torch.randint(3, vocab, (batch_size,), device=device) for _ in slots]
        passes = [
            [random_sequences(batch_size, TRAIN_LENGTHS, vocab, seed=100 * step + j) for j in slots]
            for step in range(warmup + steps)
        ]
        base.train()
        tokens = 0
        for step, groups in enumerate(passes):
            if step == warmup:
                synchronize(device)
                start = time.perf_counter()
            out = joint_step(
                base,
                stack,
                slots,
                groups,
                targets,
                optimizers,
                scalers,
                generators,
                train,
                pad_id=0,
                device=device,
                multiple=multiple,
            )
            if step >= warmup:
                tokens += sum(len(s) for group in groups for s in group)
        loss = torch.stack([loss for loss, _ in out])
        synchronize(device)
        elapsed = time.perf_counter() - start
    finally:
        base.eval()
        stack.remove()
    if not torch.isfinite(loss).all():
        raise RuntimeError(f"joint training losses are {loss.tolist()} on random weights")
    return tokens / elapsed, steps * members * batch_size / elapsed


def _time_passes(
    one_pass, sequences: list[list[int]], warmup: int | None, repeats: int, device: torch.device
):
    """Best seconds of ``repeats`` timed ``one_pass(sequences)`` calls and the last pass's
    output, after an untimed warm-up pass over the first ``warmup`` sequences (all of them
    when None) that brings up the kernels and the allocator."""
    one_pass(sequences if warmup is None else sequences[: max(1, warmup)])
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        out = one_pass(sequences)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best, out


def time_evaluation(
    model,
    infer: InferParams,
    questions: int,
    vocab: int,
    repeats: int,
    multiple: int,
    warmup: int | None = None,
    *,
    members: int = 1,
    lora: LoraParams | None = None,
) -> tuple[float, float]:
    """Evaluated tokens/s and questions/s (best of ``repeats``, after a warm-up pass over the
    first ``warmup`` questions, all of them when None) of ``sequence_letter_logits``; with
    ``members`` > 1, of ``stacked_letter_logits`` on the plain base ``model`` with that many
    stacked ``lora`` adapters: each question once per member in one pass, all members'
    tokens and questions counted (as the joint training rows count them). The stack is
    removed after."""
    sequences = random_sequences(questions, EVAL_LENGTHS, vocab, seed=10_000)
    letters = list(range(3, 3 + LETTERS))
    device = next(model.parameters()).device
    common = dict(pad_id=0, batch_tokens=infer.batch_tokens, progress=False, multiple=multiple)
    stack = None
    if members > 1:
        stack = StackedLora(model, lambda m: attach_lora(model, lora, seed=m), list(range(members)))
        model.eval()

    def one_pass(batch: list[list[int]]):
        if stack is None:
            return sequence_letter_logits(model, batch, letters, **common)
        return stacked_letter_logits(model, stack, batch, letters, slots=stack.members, **common)

    try:
        best, (logits, lse) = _time_passes(one_pass, sequences, warmup, repeats, device)
    finally:
        if stack is not None:
            stack.remove()
    if not (np.isfinite(logits).all() and np.isfinite(lse).all()):
        raise RuntimeError("evaluation produced non-finite logits on random weights")
    tokens = sum(len(s) for s in sequences)
    return members * tokens / best, members * questions / best


def peak_memory_gib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


def measure_row(
    device: torch.device,
    n_blocks: int,
    peak: float,
    phase: str,
    quantization: str,
    batch: str,
    flops_per_token: int,
    run,
) -> Result:
    """Run ``run`` (-> tokens/s, questions/s) and make a report row of it."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    tokens_s, questions_s = run()
    flops = flops_per_token * n_blocks * tokens_s
    return Result(
        phase,
        quantization,
        batch,
        tokens_s,
        questions_s,
        flops / 1e12,
        flops / peak,
        peak_memory_gib(device),
    )


def check_model(
    model,
    quantization: str,
    args: argparse.Namespace,
    peak: float,
    lora: LoraParams,
    train: TrainParams,
    infer: InferParams,
    geometry: dict,
    n_blocks: int,
) -> list[Result]:
    """Attach the paper's LoRA, then time training at each batch size and one evaluation.

    ``n_blocks`` is N of the FLOP counts, taken from the unquantized model: bitsandbytes packs
    two 4-bit weights per stored element, so counting a 4-bit model would halve it.
    """
    device = next(model.parameters()).device
    vocab = geometry["vocab_size"]
    results = []
    if args.joint:  # on the plain base, before peft wraps it
        for multiple in args.pad_multiple or [pad_multiple(device)]:
            label = f", width ×{multiple}" if args.pad_multiple else ""
            for batch_size in args.batch_sizes:
                results.append(
                    measure_row(
                        device,
                        n_blocks,
                        peak,
                        "train joint",
                        quantization,
                        f"{args.joint}×{batch_size} questions{label}",
                        4,
                        lambda b=batch_size, m=multiple: time_joint_training(
                            model, lora, train, args.joint, b, args.steps, args.warmup, vocab, m
                        ),
                    )
                )
            if args.eval_questions:
                results.append(
                    measure_row(
                        device,
                        n_blocks,
                        peak,
                        "evaluate joint",
                        quantization,
                        f"{args.joint} members, {infer.batch_tokens} tokens{label}",
                        2,
                        lambda m=multiple: time_evaluation(
                            model,
                            infer,
                            args.eval_questions,
                            vocab,
                            args.repeats,
                            m,
                            members=args.joint,
                            lora=lora,
                        ),
                    )
                )
    model = attach_lora(model, lora, seed=0)
    if args.compile:
        # The optimizer and checkpoints keep using the peft model: the compiled one shares
        # its parameters. Fewer, fused kernels matter most where the host is the bottleneck.
        model = torch.compile(model)

    def measure(phase: str, batch: str, flops_per_token: int, run) -> Result:
        return measure_row(device, n_blocks, peak, phase, quantization, batch, flops_per_token, run)

    for multiple in args.pad_multiple or [pad_multiple(device)]:
        label = f", width ×{multiple}" if args.pad_multiple else ""
        for batch_size in args.batch_sizes:
            results.append(
                measure(
                    "train",
                    f"{batch_size} questions{label}",
                    4,
                    lambda b=batch_size, m=multiple: time_training(
                        model, train, b, args.steps, args.warmup, vocab, m
                    ),
                )
            )
        if args.eval_questions:
            results.append(
                measure(
                    "evaluate",
                    f"{infer.batch_tokens} tokens{label}",
                    2,
                    lambda m=multiple: time_evaluation(
                        model, infer, args.eval_questions, vocab, args.repeats, m
                    ),
                )
            )
    if args.profile:
        profile_training(model, train, args.batch_sizes[0], vocab, pad_multiple(device))
    return results


def profile_training(model, train: TrainParams, batch_size: int, vocab: int, multiple: int) -> None:
    """Where a training step's time goes: torch.profiler's top operators by device and CPU time."""
    from torch.profiler import ProfilerActivity, profile

    device = next(model.parameters()).device
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        time_training(model, train, batch_size, 3, 0, vocab, multiple)
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=15), flush=True)
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=10), flush=True)


def scratch_dir(needed_bytes: int) -> str | None:
    """RAM-backed /dev/shm when it can hold the saved weights (faster reloads), else the default."""
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > 1.2 * needed_bytes:
        return str(shm)
    return None


def release_memory(device: torch.device) -> None:
    torch._dynamo.reset()  # compiled graphs would keep the released model alive
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def format_table(results: list[Result], peak: float, device_name: str) -> str:
    lines = [
        f"device: {device_name}; measured matmul peak {peak / 1e12:.1f} TFLOP/s",
        "| phase | base | batch | tokens/s | questions/s | TFLOP/s | of peak | peak mem GiB |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.phase} | {r.quantization} | {r.batch} | {r.tokens_per_s:,.0f} | "
            f"{r.questions_per_s:,.1f} | {r.tflops:.2f} | {r.fraction_of_peak:.1%} | "
            f"{'-' if r.peak_memory_gib is None else f'{r.peak_memory_gib:.1f}'} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cpu-tiny", action="store_true", help="tiny geometry on CPU in float32 (for the tests)"
    )
    parser.add_argument(
        "--quantization",
        nargs="+",
        default=["none"],
        choices=["none", "4bit", "8bit"],
        help="base model variants to time, in order (4bit/8bit need bitsandbytes and a GPU)",
    )
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument(
        "--batch-sizes", nargs="+", type=int, default=[8, 32], help="training batch sizes"
    )
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per batch size")
    parser.add_argument("--warmup", type=int, default=3, help="untimed training steps first")
    parser.add_argument("--eval-questions", type=int, default=1024, help="0 skips evaluation")
    parser.add_argument("--repeats", type=int, default=2, help="timed evaluation passes (best)")
    parser.add_argument("--batch-tokens", type=int, default=None, help="evaluation token budget")
    parser.add_argument("--peak-size", type=int, default=8192, help="matmul side for the peak")
    parser.add_argument(
        "--pad-multiple",
        nargs="+",
        type=int,
        default=None,
        help="batch width multiples to compare (default: lorauq's own, 8 on GPU)",
    )
    parser.add_argument("--profile", action="store_true", help="profile a few training steps")
    parser.add_argument("--compile", action="store_true", help="torch.compile the LoRA model")
    parser.add_argument(
        "--joint",
        type=int,
        default=0,
        metavar="M",
        help="also time M members trained in one pass at each batch size (0: off)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.cpu_tiny:
        args.dtype = "float32"
        args.quantization = ["none"]
        args.batch_sizes = [4]
        args.steps, args.warmup, args.eval_questions, args.repeats = 2, 1, 16, 1
        args.peak_size = 256
        args.joint = args.joint or 2
    return args


def main(argv: list[str] | None = None) -> list[Result]:
    args = parse_args(argv)
    device = torch.device("cpu" if args.cpu_tiny else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --cpu-tiny for the CPU self-test")
    geometry = TINY if args.cpu_tiny else MISTRAL_7B
    dtype = getattr(torch, args.dtype)
    # The paper profile's training and evaluation settings (docs/paper.md).
    lora = LoraParams(r=8, alpha=32, dropout=0.0, target_modules=["q_proj", "v_proj"])
    train = TrainParams(lr=5e-6, batch_size=8, grad_clip=0.3, prior_lambda=1.0)
    infer = InferParams(batch_tokens=args.batch_tokens or (1024 if args.cpu_tiny else 16384))
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    peak = matmul_peak(device, dtype, args.peak_size, repeats=10 if args.cpu_tiny else 20)
    print(f"{device_name}: {args.dtype} matmul peak {peak / 1e12:.1f} TFLOP/s", flush=True)

    start = time.perf_counter()
    model = build_random_model(geometry, dtype, device)
    total = sum(p.numel() for p in model.parameters())
    n_blocks = block_parameters(model)
    print(
        f"random {'tiny' if args.cpu_tiny else 'Mistral-7B'} geometry: {total:,} parameters, "
        f"built in {time.perf_counter() - start:.1f} s",
        flush=True,
    )
    results: list[Result] = []
    # bf16 first: its weights are saved (before LoRA touches them) for the quantized reloads.
    variants = sorted(set(args.quantization), key=["none", "8bit", "4bit"].index)
    with tempfile.TemporaryDirectory(dir=scratch_dir(2 * total)) as tmp:
        folder = Path(tmp) / "base"
        if variants != ["none"]:
            model.save_pretrained(folder, safe_serialization=True)
        for variant in variants:
            if variant == "none":
                target = model
            else:
                model = None  # release the bf16 copy before loading the quantized one
                release_memory(device)
                start = time.perf_counter()
                target = load_base_model(
                    str(folder),
                    BaseParams(
                        kind="pretrained", model=str(folder), dtype=args.dtype, quantization=variant
                    ),
                )
                print(f"{variant} base loaded in {time.perf_counter() - start:.1f} s", flush=True)
            rows = check_model(target, variant, args, peak, lora, train, infer, geometry, n_blocks)
            print(format_table(rows, peak, device_name), flush=True)
            results += rows
            del target
            release_memory(device)
    print()
    print(format_table(results, peak, device_name))
    if args.json:
        payload = {
            "device": device_name,
            "dtype": args.dtype,
            "parameters": total,
            "block_parameters": n_blocks,
            "matmul_peak_tflops": peak / 1e12,
            "results": [asdict(r) for r in results],
        }
        write_text_atomic(args.json, json.dumps(payload, indent=2))
    return results


if __name__ == "__main__":
    main()
