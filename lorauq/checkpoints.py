"""Where a member's checkpoints live, and which of them are complete.

``<member folder>/epoch-<e>/`` holds peft's adapter files plus the training state. Folders
are written under a temporary name and renamed (:func:`lorauq.atomic.atomic_dir`), so a folder
with this name and both files is a finished epoch. Training writes them and inference reads
them; both ask this module, so neither needs the other's code.
"""

from __future__ import annotations

import re
from pathlib import Path

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
    import json

    log = json.loads((Path(folder) / LOG_FILE).read_text(encoding="utf-8"))
    return {**log, "lora_l2": adapter_l2(folder)}
