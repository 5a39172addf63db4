"""Where every artefact of an experiment lives, relative to the repository root.

The paths are the ones ``dvc.yaml`` declares as each stage's outputs, so a stage writes
exactly what DVC tracks and a member can be built alone on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lorauq.errors import StoreError

__all__ = ["Layout", "find_root"]


@dataclass(frozen=True)
class Layout:
    """The experiment's folders under ``root`` (the repository root by default)."""

    root: Path = Path(".")

    @property
    def prepared(self) -> Path:
        return self.root / "data" / "prepared"

    @property
    def base(self) -> Path:
        return self.root / "data" / "base"

    @property
    def adapters(self) -> Path:
        return self.root / "data" / "adapters"

    @property
    def logits(self) -> Path:
        return self.root / "data" / "logits"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def train_table(self) -> Path:
        return self.prepared / "train.parquet"

    @property
    def calibration_table(self) -> Path:
        """The training rows held out of fine-tuning (``data.calibration_fraction``)."""
        return self.prepared / "calibration.parquet"

    def eval_table(self, name: str) -> Path:
        return self.prepared / "eval" / f"{name}.parquet"

    def unit_dir(self, ensemble: str, unit: str) -> Path:
        """The adapters of one fine-tuning stage: ``data/adapters/<ensemble>/members-<unit>``."""
        return self.adapters / ensemble / f"members-{unit}"

    def member_dir(self, ensemble: str, unit: str, member: int) -> Path:
        """One member's epoch checkpoints, inside its stage's folder."""
        return self.unit_dir(ensemble, unit) / f"member-{member}"

    def unit_logits(self, ensemble: str, unit: str) -> Path:
        """The letter logits of one inference stage (all its members, every epoch)."""
        return self.logits / ensemble / f"members-{unit}.parquet"

    def unit_training(self, ensemble: str, unit: str) -> Path:
        """Per member and epoch: training loss, LoRA-L2 norm of the saved adapter, time."""
        return self.logits / ensemble / f"members-{unit}.training.json"

    @property
    def prior_logits(self) -> Path:
        return self.logits / "prior.parquet"


def find_root(start: str | Path | None = None) -> Path:
    """The repository root: the nearest folder upwards holding ``params.yaml`` and ``dvc.yaml``.

    Notebooks run from ``notebooks/`` in JupyterLab and from the root under papermill/DVC;
    both find the same root.
    """
    here = Path(start or Path.cwd()).resolve()  # "" or None: the working folder
    for folder in (here, *here.parents):
        if (folder / "params.yaml").is_file() and (folder / "dvc.yaml").is_file():
            return folder
    raise StoreError(
        f"{here}: no params.yaml + dvc.yaml here or above; run from inside the lorauq repository"
    )
