"""The checkpoint format: where a member's checkpoints live, what they hold, which are complete.

``<member folder>/epoch-<e>/`` holds peft's adapter files plus the training state. Folders
are written under a temporary name and renamed (:func:`lorauq.atomic.atomic_dir`), so a folder
with this name and both files is a finished epoch. Training writes them and inference reads
them; both ask this module, so neither needs the other's code. Both ways of training
(``lorauq.train`` one member at a time, ``lorauq.joint`` several together) write and resume
through the same functions here, so their folders are the same file for file.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lorauq.atomic import atomic_dir
from lorauq.errors import StoreError

if TYPE_CHECKING:
    import torch

__all__ = [
    "ADAPTER_FILE",
    "LOG_FILE",
    "STATE_FILE",
    "adapter_l2",
    "checkpoint_must_fit",
    "completed_epochs",
    "epoch_dir",
    "epoch_log",
    "peft_adapter",
    "read_checkpoint",
    "restore_checkpoint",
    "restore_optimizer",
    "resume_point",
    "training_record",
    "training_state",
    "write_checkpoint",
]

STATE_FILE = "training_state.pt"
LOG_FILE = "train_log.json"
ADAPTER_FILE = "adapter_model.safetensors"
_EPOCH_DIR = re.compile(r"^epoch-(\d+)$")


def epoch_dir(member_dir: Path, epoch: int) -> Path:
    return member_dir / f"epoch-{epoch}"


def completed_epochs(member_dir: Path) -> list[int]:
    """Epochs whose checkpoint folder is complete (only complete ones are ever renamed in)."""
    if not member_dir.is_dir():
        return []
    found = []
    for child in member_dir.iterdir():
        match = _EPOCH_DIR.match(child.name)
        if match and (child / ADAPTER_FILE).is_file() and (child / STATE_FILE).is_file():
            found.append(int(match.group(1)))
    return sorted(found)


def adapter_l2(folder: Path) -> float:
    """Σ over adapted layers of ‖B·A‖²_F of a saved adapter: the LoRA-L2 term before λ.

    Computed from the file, as the authors logged it at each checkpoint (the training log's
    ``prior`` is the mean over the epoch's steps instead). No α/r scale, as in the loss.
    """
    from safetensors.torch import load_file

    weights = load_file(Path(folder) / ADAPTER_FILE)
    total = 0.0
    for key, a in weights.items():
        if ".lora_A." not in key:
            continue
        b = weights[key.replace(".lora_A.", ".lora_B.")].double()
        a = a.double()
        total += float(((b.T @ b) * (a @ a.T)).sum())  # ‖BA‖²_F = Σ (BᵀB)∘(AAᵀ)
    return total


def training_record(folder: Path) -> dict:
    """One epoch's training log plus the LoRA-L2 norm of its saved adapter."""
    log = json.loads((Path(folder) / LOG_FILE).read_text(encoding="utf-8"))
    return {**log, "lora_l2": adapter_l2(folder)}


def training_state(
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    epoch: int,
    torch_rng: torch.Tensor,
    cuda_rng: list[torch.Tensor] | None,
) -> dict:
    """What a resume needs besides the adapter: AdamW's state, the RNGs and the loss scale."""
    state = {"optimizer": optimizer.state_dict(), "torch_rng": torch_rng, "epoch": epoch}
    if cuda_rng is not None:  # LoRA dropout on a GPU draws from the CUDA RNG
        state["cuda_rng"] = cuda_rng
    if scaler.is_enabled():
        state["scaler"] = scaler.state_dict()
    return state


def write_checkpoint(
    member_dir: Path, epoch: int, adapter: tuple[dict, object], state: dict, log: dict
) -> Path:
    """An epoch's folder, complete or absent: the adapter in peft's format (its tensors as
    ``adapter_model.safetensors`` and its ``LoraConfig`` as ``adapter_config.json``, the files
    ``PeftModel.from_pretrained`` reads), the training state and the log, renamed into place
    together. Both ways of training hand over ``adapter = (tensors, config)``, so a member's
    folder has the same files whichever way it was trained."""
    import torch
    from safetensors.torch import save_file

    tensors, config = adapter
    target = epoch_dir(member_dir, epoch)
    with atomic_dir(target) as tmp:
        save_file(tensors, str(tmp / ADAPTER_FILE), metadata={"format": "pt"})
        config.save_pretrained(str(tmp))
        torch.save(state, tmp / STATE_FILE)
        (tmp / LOG_FILE).write_text(json.dumps(log, indent=2))
    return target


def peft_adapter(model) -> tuple[dict, object]:
    """(tensors, config) of a peft model's ``default`` adapter, as its ``save_pretrained``
    would write them (keys without the adapter's name, config marked for inference)."""
    from peft import get_peft_model_state_dict

    tensors = {
        key: value.detach().to("cpu").contiguous()
        for key, value in get_peft_model_state_dict(model).items()
    }
    config = copy.deepcopy(model.peft_config["default"])
    config.inference_mode = True
    return tensors, config


def read_checkpoint(folder: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """An epoch's adapter tensors and training state; an unreadable file names the folder."""
    import torch
    from safetensors.torch import load_file

    try:
        weights = load_file(folder / ADAPTER_FILE)
        state = torch.load(folder / STATE_FILE, weights_only=True, map_location="cpu")
    except Exception as exc:
        raise StoreError(
            f"{folder}: checkpoint cannot be read ({exc}); delete the folder to retrain"
        ) from exc
    return weights, state


@contextlib.contextmanager
def checkpoint_must_fit(folder: Path) -> Iterator[None]:
    """Loading a checkpoint into this model and optimiser: a mismatch names the folder."""
    try:
        yield
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise StoreError(
            f"{folder}: checkpoint does not fit this base model and LoRA config (trained on "
            f"another base, or other lora params?): {' '.join(str(exc).split())[:300]}; delete the "
            "member's folder to retrain"
        ) from exc


def restore_optimizer(
    optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, state: dict
) -> None:
    optimizer.load_state_dict(state["optimizer"])
    if scaler.is_enabled() and "scaler" in state:
        scaler.load_state_dict(state["scaler"])


def restore_checkpoint(model, optimizer, scaler, folder: Path) -> None:
    """Load an epoch's adapter, optimizer, scaler and RNG state; any failure names the folder."""
    import torch
    from peft import set_peft_model_state_dict

    weights, state = read_checkpoint(folder)
    with checkpoint_must_fit(folder):
        # peft loads with strict=False but still raises on a shape mismatch.
        set_peft_model_state_dict(model, weights)
        restore_optimizer(optimizer, scaler, state)
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])


def epoch_log(
    member: int,
    epoch: int,
    losses: list[float],
    priors: list[float],
    tokens: int,
    elapsed: float,
    step: int,
) -> dict:
    """Checkpoint ``epoch``'s log: the means over the steps since the previous checkpoint, and
    ``step``, the optimiser step it was taken after (``lorauq.schedule``)."""
    return {
        "member": member,
        "epoch": epoch,
        "step": step,
        "loss": float(np.mean(losses)),
        "prior": float(np.mean(priors)),
        "tokens": tokens,
        "elapsed_s": elapsed,
    }


def resume_point(member_dir: Path, steps: Sequence[int]) -> tuple[list[int], list[dict]]:
    """The complete checkpoints among the ``len(steps)`` planned and their logs, read back.

    ``steps[k - 1]`` is the step checkpoint k is planned at; a saved one taken at another step
    (the schedule changed since) would resume the wrong stream, so it fails naming its folder.
    """
    done = [e for e in completed_epochs(member_dir) if e <= len(steps)]
    logs = [json.loads((epoch_dir(member_dir, e) / LOG_FILE).read_text()) for e in done]
    for e, log in zip(done, logs, strict=True):
        if log.get("step", steps[e - 1]) != steps[e - 1]:
            raise StoreError(
                f"{epoch_dir(member_dir, e)}: checkpoint taken at step {log['step']}, but "
                f"train.epochs/steps/checkpoint_steps now put checkpoint {e} at step "
                f"{steps[e - 1]}; delete the member's folder to retrain"
            )
    return done, logs
