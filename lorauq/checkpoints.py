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
