"""The smallest tiny world that still trains: one base, its tokenizer and the fine-tuning set.

Shared by the bad-input catalogue, the kill/resume test (its child processes import this
module too, so parent and child train exactly the same member) and the determinism test.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from lorauq.config import BaseParams, DataParams, InferParams, LoraParams, TrainParams

WORLD: dict[str, Any] = {
    "held_out_fraction": 0.1,
    "in_domain_repeats": 1,
    "noisy_repeats": 1,
    "noisy_eval_repeats": 1,
    "unseen_words": 4,
    "pretrain_repeats": 1,
}
BASE = BaseParams(
    vocab_size=300,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=1,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    pretrain_steps=10,
    pretrain_batch_size=8,
)
DATA = DataParams(world=WORLD)
LORA = LoraParams(r=4, alpha=8.0, target_modules=["q_proj", "v_proj"])
TRAIN = TrainParams(epochs=2, lr=1e-2, batch_size=16, max_length=256, prior_lambda=1.0)
INFER = InferParams(max_length=256, batch_tokens=512)


def build_base(folder: Path, base: BaseParams = BASE) -> Path:
    """Build and save the tiny base (about a second on one core)."""
    from lorauq.tiny.base import build_tiny_base

    torch.set_num_threads(1)
    return build_tiny_base(folder, base, DATA, progress=False)


def train_set():
    from lorauq.tiny.world import WorldSpec, finetune_questions

    return finetune_questions(WorldSpec.from_params(WORLD))


def eval_set(domain: str = "in_domain"):
    from lorauq.tiny.world import WorldSpec, domain_questions

    return domain_questions(domain, WorldSpec.from_params(WORLD))


def schedule(epochs: int, steps: int | None = None, checkpoint_steps=()) -> TrainParams:
    """TRAIN for ``epochs`` epochs or, given ``steps``, by steps (checkpoints at those named)."""
    if steps is None:
        return dataclasses.replace(TRAIN, epochs=epochs)
    marks = list(checkpoint_steps)
    return dataclasses.replace(TRAIN, epochs=None, steps=steps, checkpoint_steps=marks)


#: The kill/resume tests' schedules. The tiny world trains 92 rows at batch 16, 6 steps an
#: epoch: by steps, checkpoint 1 falls at step 4 (mid epoch 1) and checkpoint 2 at step 9, its
#: steps 5…9 running on into epoch 2's order.
KILL_SCHEDULES: dict[str, dict[str, Any]] = {
    "epochs": {"epochs": 2},
    "steps": {"steps": 9, "checkpoint_steps": [4]},
}


def train(
    base_dir: Path,
    member_dir: Path,
    *,
    member: int = 0,
    epochs: int = TRAIN.epochs,
    steps: int | None = None,
    checkpoint_steps=(),
):
    """Train one member on a freshly loaded base, as the pipeline's finetune stage does."""
    from lorauq.model import load_base_model, load_tokenizer
    from lorauq.train import train_member

    return train_member(
        load_base_model(str(base_dir), BASE),
        load_tokenizer(str(base_dir), BASE),
        train_set(),
        member=member,
        member_dir=member_dir,
        lora=LORA,
        train=schedule(epochs, steps, checkpoint_steps),
        progress=False,
    )


def train_joint(
    base_dir: Path,
    root: Path,
    *,
    members: list[int],
    epochs: int = TRAIN.epochs,
    lora=LORA,
    steps: int | None = None,
    checkpoint_steps=(),
):
    """Train ``members`` together (``root/member-m``) on one freshly loaded base."""
    from lorauq.joint import train_members
    from lorauq.model import load_base_model, load_tokenizer

    return train_members(
        load_base_model(str(base_dir), BASE),
        load_tokenizer(str(base_dir), BASE),
        train_set(),
        {m: root / f"member-{m}" for m in members},
        lora=lora,
        train=schedule(epochs, steps, checkpoint_steps),
        progress=False,
    )


def stage_params(unit: str, ensemble: str, *, joint: bool = True) -> dict[str, Any]:
    """A ``params.yaml`` mapping of one tiny-world profile ``p``: one ensemble, one stage of
    ``unit``'s members, trained and evaluated jointly or in turn."""
    profile = {
        "members": [unit],
        "ensembles": {ensemble: {}},
        "base": {**dataclasses.asdict(BASE), "kind": "tiny"},
        "data": {
            "template": "paper",
            "world": WORLD,
            "train": {"source": "synthetic", "split": "train"},
            "eval": {
                "in_domain": {"source": "synthetic", "split": "in_domain"},
                "unseen": {"source": "synthetic", "split": "unseen"},
            },
        },
        "lora": dataclasses.asdict(LORA),
        "train": {**dataclasses.asdict(TRAIN), "threads": 1, "joint": joint},
        "infer": {**dataclasses.asdict(INFER), "threads": 1, "joint": joint},
        "analysis": {"in_domain": "in_domain"},
    }
    return {"profile": "p", "ensembles": [ensemble], "members": [unit], "p": profile}


def adapter_tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")


ROOT = Path(__file__).resolve().parents[1]


def sigkill_at_marker(script: str, args: list[str], marker: Path, cwd: Path) -> None:
    """Run ``python -c script *args``, wait until it writes ``marker``, then SIGKILL it.

    The child decides where it stops (it writes the marker and sleeps), so the kill lands at
    a known point instead of after a racy timer; SIGKILL runs no ``finally`` or atexit.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_VERBOSITY="error",
        TOKENIZERS_PARALLELISM="false",
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            if child.poll() is not None:
                pytest.fail(
                    f"child exited ({child.returncode}) before {marker.name}: "
                    f"{child.stderr.read()[-3000:]}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"child did not reach {marker.name} in 120 s")
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stderr.close()
