"""Laplace's curvature fit: questions per curvature batch, time and peak memory, in one run.

laplace-torch's default GGN backend (curvlinops) goes through the Jacobian of each batch of
the K letter logits; every output's backward pass runs through the whole batch, so a batch
of b questions costs about b² single-question backward passes. ``lorauq.methods.laplace``
fits with one question per batch; the baseline is 16 per batch (the validation batches'
size, and what the method used before). Each setting runs in its own process, so its peak
resident memory is its own; the diagonal GGN of every setting is compared with the first's.

The model is the tiny profile's geometry with random weights and LoRA r 8 on q/v, the
questions made up (``benchmarks.run``); the curvature does not depend on trained weights.

    OMP_NUM_THREADS=2 .venv/bin/python -m benchmarks.laplace_curvature
    .venv/bin/python -m benchmarks.laplace_curvature --questions 16 --batches 1,4   # smoke

It ends with ``ratio batch1_vs_batch16: X (time)`` and ``… Y (peak memory)``: the baseline's
over lorauq's.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.run import GEOMETRIES, LORA, base_params, build_base, made_up_questions
from lorauq.lora import lora_config
from lorauq.model import load_base_model, load_tokenizer
from lorauq.prompt import format_prompt
from lorauq.tiny.model import train_tokenizer

BASELINE = 16


def fit_once(folder: str, questions: int, batch: int, queue) -> None:
    """One curvature fit in this (fresh) process: seconds, peak RSS, the diagonal."""
    from laplace import Laplace
    from peft import get_peft_model

    from lorauq.methods.laplace import LetterHead, _loader
    from lorauq.readout import encode_eval_set

    torch.manual_seed(0)
    params = base_params(Path(folder))
    tokenizer = load_tokenizer(folder, params)
    model = get_peft_model(load_base_model(folder, params), lora_config(LORA))
    for name, weight in model.named_parameters():  # B = 0 at init: give the LoRA weights a value
        if "lora_B" in name:
            torch.nn.init.normal_(weight, std=0.02)
    model.eval()
    frame = made_up_questions(questions, seed=1)
    encoded = encode_eval_set(tokenizer, frame)
    loader = _loader(
        encoded.sequences, frame["answer"].to_numpy(copy=True), tokenizer.pad_token_id, batch
    )
    head = LetterHead(model, encoded.letters)
    la = Laplace(head, "classification", subset_of_weights="all", hessian_structure="diag")
    start = time.perf_counter()
    la.fit(loader, progress_bar=False)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # a numpy copy travels by value: a torch tensor would travel as a shared-memory handle
    # the parent fetches from this process, which may have exited by then (FileNotFoundError
    # in multiprocessing.connection.Client)
    queue.put((seconds, peak, la.H.detach().cpu().numpy().copy()))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=160)
    parser.add_argument("--batches", default="1,2,4,16", help="questions per curvature batch")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        frame = made_up_questions(args.questions, seed=1)
        texts = [format_prompt(r) for r in frame.to_dict("records")]
        folder = Path(scratch) / "base"
        build_base(folder, train_tokenizer(texts, vocab_size=1000), GEOMETRIES["tiny"])
        context = multiprocessing.get_context("spawn")
        results = {}
        for batch in batches:
            queue = context.Queue()
            process = context.Process(
                target=fit_once, args=(str(folder), args.questions, batch, queue)
            )
            process.start()
            results[batch] = queue.get()
            process.join()
    reference = results[batches[0]][2]
    print(f"{args.questions} questions, tiny geometry, LoRA r 8 on q/v, diagonal GGN")
    print(f"{'batch':>5} {'seconds':>8} {'peak RSS MiB':>13} {'max rel. diff of the diagonal':>30}")
    for batch, (seconds, peak, diagonal) in results.items():
        diff = float(np.abs(diagonal - reference).max() / np.abs(reference).max())
        print(f"{batch:>5} {seconds:>8.2f} {peak:>13.0f} {diff:>30.1e}")
    out: dict[str, float] = {
        f"diagonal_diff_batch{batch}": float(
            np.abs(diagonal - reference).max() / np.abs(reference).max()
        )
        for batch, (_, _, diagonal) in results.items()
    }
    if 1 in results and BASELINE in results:
        out["time"] = results[BASELINE][0] / results[1][0]
        out["memory"] = results[BASELINE][1] / results[1][1]
        print(f"ratio batch1_vs_batch{BASELINE}: {out['time']:.2f} (time)")
        print(f"ratio batch1_vs_batch{BASELINE}: {out['memory']:.2f} (peak memory)")
    return out


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
