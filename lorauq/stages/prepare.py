"""Stage ``prepare``: every source of the experiment as a validated, prepared Question table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lorauq.config import Params, SourceSpec
from lorauq.data import load_questions
from lorauq.errors import ConfigError
from lorauq.layout import Layout
from lorauq.questions import save_questions
from lorauq.synthetic import WorldSpec


def _load_source(spec: SourceSpec, world: WorldSpec) -> pd.DataFrame:
    frame = load_questions(
        spec.source,
        spec.split,
        path=spec.path,
        group=spec.group,
        subjects=spec.subjects,
        world=world if spec.source == "synthetic" else None,
    )
    return frame.head(spec.limit).reset_index(drop=True) if spec.limit else frame


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
    """``train.parquet``, ``calibration.parquet`` when ``data.calibration_fraction`` > 0 and one
    ``eval/<name>.parquet`` per eval set under ``data/prepared``."""
    world = WorldSpec.from_params(params.data.world)
    train, held = split_calibration(
        _load_source(params.data.train, world), params.data.calibration_fraction
    )
    written = {"train": save_questions(train, layout.train_table)}
    if len(held):
        written["calibration"] = save_questions(held, layout.calibration_table)
    for name, spec in params.data.eval.items():
        written[name] = save_questions(_load_source(spec, world), layout.eval_table(name))
    return written
