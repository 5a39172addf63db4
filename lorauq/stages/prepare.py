"""Stage ``prepare``: every source of the experiment as a validated, prepared Question table.

Beside the tables it writes ``data/prepared/manifest.json``: per table, the source as the
params give it (hub id or local path, split, revision, limit) and every read it was made of,
with a SHA-256 of what was read before ``limit`` cut it (a hub split's rows, a file's bytes;
see :class:`lorauq.hub.SourceRead`). The manifest is part of ``data/prepared``, which DVC
tracks, so a source that returns other bytes gives other prepared data: ``dvc diff`` and
``dvc.lock`` show it, instead of every later number moving without a trace.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lorauq.atomic import write_text_atomic
from lorauq.config import Params, SourceSpec
from lorauq.data import load_source
from lorauq.errors import ConfigError
from lorauq.layout import Layout
from lorauq.questions import save_questions
from lorauq.tiny.world import WorldSpec

__all__ = [
    "MANIFEST",
    "MANIFEST_FORMAT",
    "SOURCES_DIR",
    "check_tracked_paths",
    "run",
    "split_calibration",
]

#: The manifest's file name inside ``data/prepared``.
MANIFEST = "manifest.json"
#: The manifest's format, raised when its keys change meaning.
MANIFEST_FORMAT = 1


def _load_source(spec: SourceSpec, world: WorldSpec) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(the table, cut to ``limit``; its manifest entry without the file and row count)."""
    loaded = load_source(
        spec.source,
        spec.split,
        path=spec.path,
        group=spec.group,
        subjects=spec.subjects,
        world=world if spec.source == "synthetic" else None,
        revision=spec.revision,
    )
    frame = loaded.frame
    if spec.limit:
        frame = frame.head(spec.limit).reset_index(drop=True)
    entry = {
        "spec": {
            "source": spec.source,
            "split": spec.split,
            "path": spec.path,
            "group": spec.group,
            "subjects": spec.subjects,
            "revision": spec.revision,
            "limit": spec.limit,
        },
        "rows_read": len(loaded.frame),
        "reads": [read.as_dict() for read in loaded.reads],
    }
    return frame, entry


#: The folder of local sources that ``dvc.yaml`` lists among the prepare stage's
#: dependencies: a ``path:`` inside it reruns ``prepare`` when its bytes change.
SOURCES_DIR = Path("data") / "sources"


def check_tracked_paths(params: Params, root: Path = Path(".")) -> None:
    """Refuse a local ``path:`` outside ``data/sources/`` when DVC runs the stage.

    DVC cannot list a dependency that a parameter names (``dvc.yaml`` cannot interpolate a
    list of paths into ``deps``), so the stage depends on one folder; a file elsewhere would
    be read, yet editing it would rerun nothing, and every later number would be stale.
    """
    tracked = (root / SOURCES_DIR).resolve()
    specs = {"train": params.data.train}
    specs.update({f"eval.{name}": spec for name, spec in params.data.eval.items()})
    for key, spec in specs.items():
        if spec.path is not None and not (root / spec.path).resolve().is_relative_to(tracked):
            raise ConfigError(
                f"{params.profile}.data.{key}.path: {spec.path} is outside {SOURCES_DIR.as_posix()}/,"
                " the folder the prepare stage depends on in dvc.yaml, so editing it would "
                f"rerun nothing; move or copy it into {SOURCES_DIR.as_posix()}/"
            )


def split_calibration(frame: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(fine-tuning rows, held-out calibration rows): a seeded draw of ``fraction`` of the rows,
    at least one when ``fraction`` > 0, the same on every machine; each part in source order."""
    if fraction == 0.0:
        return frame, frame.iloc[:0]
    n_held = max(1, round(fraction * len(frame)))
    if n_held >= len(frame):
        raise ConfigError(
            f"data.calibration_fraction={fraction} holds out {n_held} of the {len(frame)} "
            "training rows and leaves none to fine-tune on; lower it"
        )
    held = np.zeros(len(frame), dtype=bool)
    held[np.random.default_rng(0).permutation(len(frame))[:n_held]] = True
    return frame[~held].reset_index(drop=True), frame[held].reset_index(drop=True)


def run(params: Params, layout: Layout = Layout()) -> dict[str, Path]:
    """``train.parquet``, ``calibration.parquet`` when ``data.calibration_fraction`` > 0, one
    ``eval/<name>.parquet`` per eval set and ``manifest.json`` under ``data/prepared``.

    Every source is loaded and checked before the first file is written, so a bad source
    leaves the previous prepared data as it was.
    """
    world = WorldSpec.from_params(params.data.world)
    fraction = params.data.calibration_fraction
    source, train_entry = _load_source(params.data.train, world)
    train, held = split_calibration(source, fraction)
    tables = {"train": (train, layout.train_table, train_entry)}
    if len(held):
        tables["calibration"] = (held, layout.calibration_table, {"held_out_of": "train"})
    for name, spec in params.data.eval.items():
        frame, entry = _load_source(spec, world)
        tables[name] = (frame, layout.eval_table(name), entry)
    written: dict[str, Path] = {}
    manifest: dict[str, Any] = {"format": MANIFEST_FORMAT, "tables": {}}
    for name, (frame, path, entry) in tables.items():
        written[name] = save_questions(frame, path)
        manifest["tables"][name] = {
            "file": Path(path).relative_to(layout.prepared).as_posix(),
            "rows": len(frame),
            **entry,
        }
    manifest["tables"]["train"]["calibration_fraction"] = fraction
    written["manifest"] = layout.prepared / MANIFEST
    write_text_atomic(written["manifest"], json.dumps(manifest, indent=2) + "\n")
    return written
